"""Split the cleaned frame and build the preprocessing that is fitted on the train split only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from layerops.errors import TrainingError
from layerops.spec import SplitSpec, Task, TransformSpec

_MAX_INTEGER_CLASSES = 20


@dataclass(frozen=True)
class Splits:
    """Raw feature frames and encoded targets of the three splits."""

    x_train: pd.DataFrame
    y_train: np.ndarray
    x_val: pd.DataFrame
    y_val: np.ndarray
    x_test: pd.DataFrame
    y_test: np.ndarray


def infer_task(target: pd.Series) -> Task:
    """Classification for text, boolean or few-valued integer targets; regression otherwise."""
    values = target.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    is_integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    if is_integral and values.nunique() <= _MAX_INTEGER_CLASSES:
        return "classification"
    return "regression"


def encode_target(target: pd.Series, task: Task) -> tuple[np.ndarray, list[str] | None]:
    """Targets as the model sees them: class indices 0..k-1 with their labels, or floats."""
    name = target.name
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
            raise TrainingError(f"target '{name}' is not numeric, so it cannot be a regression target")
        return target.to_numpy(dtype=np.float64), None
    labels = target.map(_label)
    classes = sorted(labels.unique())
    if len(classes) < 2:
        raise TrainingError(
            f"target '{name}' has a single class {classes[0]!r}; a classifier needs two or more"
        )
    index = {label: i for i, label in enumerate(classes)}
    return labels.map(index).to_numpy(dtype=np.int64), classes


def _label(value: object) -> str:
    """A class label as text; integral floats lose their '.0' so 1.0 and 1 are one class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def prepare_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers and booleans as float64, everything else as text objects with NaN for missing."""
    out = {}
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            out[column] = series.astype(np.float64)
        else:
            text = series.astype(object).map(str).astype(object)
            out[column] = text.where(series.notna(), np.nan)
    return pd.DataFrame(out, index=frame.index)


def split_frame(x: pd.DataFrame, y: np.ndarray, spec: SplitSpec, *, task: Task, seed: int) -> Splits:
    """Train/validation/test split, stratified for classification where every class allows it."""
    train, val, test = split_indices(y, spec, task=task, seed=seed)
    return Splits(
        x.iloc[train].reset_index(drop=True),
        y[train],
        x.iloc[val].reset_index(drop=True),
        y[val],
        x.iloc[test].reset_index(drop=True),
        y[test],
    )


def split_indices(
    y: np.ndarray, spec: SplitSpec, *, task: Task, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of the train, validation and test splits of rows with targets `y`."""
    n = len(y)
    n_test = max(1, round(n * spec.test))
    n_val = max(1, round(n * spec.validation))
    if n - n_test - n_val < 2:
        raise TrainingError(f"only {n} rows after cleaning: too few to split into train/validation/test")
    positions = np.arange(n)
    stratify = y if task == "classification" and _can_stratify(y, n_test, n_val) else None
    rest, test = train_test_split(positions, test_size=n_test, random_state=seed, stratify=stratify)
    train, val = train_test_split(
        rest, test_size=n_val, random_state=seed, stratify=None if stratify is None else y[rest]
    )
    return np.asarray(train), np.asarray(val), np.asarray(test)


def fold_count(task: Task, y: np.ndarray, folds: int) -> int:
    """`folds`, lowered so that each fold keeps a row of every class (classification) or a row."""
    if folds < 2:
        return 0
    if task == "classification":
        counts = np.bincount(y)
        folds = min(folds, max(2, int(counts[counts > 0].min())))
    return max(2, min(folds, len(y) // 2))


def _can_stratify(y: np.ndarray, n_test: int, n_val: int) -> bool:
    counts = np.bincount(y)
    classes = int(np.count_nonzero(counts))
    return bool(counts[counts > 0].min() >= 3 and n_test >= classes and n_val >= classes)


def build_preprocessor(x_train: pd.DataFrame, spec: TransformSpec) -> ColumnTransformer:
    """An unfitted ColumnTransformer: impute + scale numbers, impute + encode categoricals."""
    numeric = [c for c in x_train.columns if pd.api.types.is_float_dtype(x_train[c])]
    categorical = [c for c in x_train.columns if c not in numeric]
    transformers: list[tuple[str, Pipeline, list[str]]] = []
    if numeric:
        steps: list[tuple[str, object]] = [("impute", SimpleImputer(strategy=spec.numeric_impute))]
        scaler = _scaler(spec.scale)
        if scaler is not None:
            steps.append(("scale", scaler))
        transformers.append(("num", Pipeline(steps), numeric))
    if categorical:
        impute = (
            SimpleImputer(strategy="constant", fill_value="missing")
            if spec.categorical_impute == "constant"
            else SimpleImputer(strategy="most_frequent")
        )
        encoder: OneHotEncoder | OrdinalEncoder
        if spec.encode == "onehot":
            encoder = OneHotEncoder(
                handle_unknown="ignore", sparse_output=False, max_categories=spec.max_categories
            )
        else:
            encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        transformers.append(("cat", Pipeline([("impute", impute), ("encode", encoder)]), categorical))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def _scaler(kind: str) -> StandardScaler | MinMaxScaler | RobustScaler | None:
    return {"standard": StandardScaler(), "minmax": MinMaxScaler(), "robust": RobustScaler()}.get(kind)
