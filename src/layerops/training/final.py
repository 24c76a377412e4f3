"""The final model: the winner's configuration refitted on every row selection may not score
(train + validation; with `selection.refit_all` the test split too), and its bundle."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import skops.io
from sklearn.pipeline import Pipeline

from layerops.bundle import BundleMetadata, FeatureSchema, ModelBundle
from layerops.bundle.profile import build_profile, infer_schema, reference_sample, sample_positions
from layerops.spec import PipelineSpec, Task
from layerops.training import lineage
from layerops.training.candidates import make_estimator, serve_on_one_thread, threads_for
from layerops.training.cleaning import CleaningPlan, CleaningReport
from layerops.training.evaluation import measure_latency, predict_outputs, score
from layerops.training.export import export_onnx
from layerops.training.selection import CandidateOutcome
from layerops.training.transform import build_preprocessor

REFERENCE_ROWS = 5
HOLDOUT_ROWS = 20_000
"""Most test-split rows a bundle keeps (`holdout.parquet`) for the promotion gate: 20,000 rows
resolve a metric difference of about one point (accuracy near 0.9) from resampling noise."""


@dataclass(frozen=True)
class Rows:
    """The screened rows of a run, their features as models take them, and the split positions."""

    screened: pd.DataFrame
    """The raw rows after screening (before the learned cleaning), target included."""
    x: pd.DataFrame
    """`screened`'s features as models take them (`prepare_features`), learned drops applied."""
    y: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    folds: int
    """k of the cross-validation that tuned the candidates; 0 when the validation split did."""
    fit: np.ndarray
    """The positions candidates are fitted on: `pool` without the rows outside the learned bounds."""

    @property
    def pool(self) -> np.ndarray:
        """The positions candidates were tuned on: train, and validation too under CV."""
        return np.concatenate([self.train, self.validation]) if self.folds else self.train


@dataclass
class FinalModel:
    """The registered model: the winner refitted, and what it was fitted on and scored."""

    model: Pipeline = field(repr=False)
    fit_splits: list[str]
    fit_rows: int
    test: dict[str, float]
    """On the test split when it was held out; else the selected model's (fitted without it)."""
    test_scored: str
    """"final" or "selected": which model `test` measured."""
    latency: dict[str, float]
    test_outputs: tuple[np.ndarray, np.ndarray | None] = field(repr=False)


def model_bytes(model: Any) -> int:
    """The size of a fitted model as the bundle stores it (skops)."""
    return len(skops.io.dumps(model))


def refit(
    spec: PipelineSpec, task: Task, best: CandidateOutcome, rows: Rows, plan: CleaningPlan, jobs: int
) -> FinalModel:
    """Fit `best`'s configuration (preprocessing included) on train + validation (+ test with
    `refit_all`), leaving out rows outside the bounds learned on the training split."""
    fit_splits = ["train", "validation"] + (["test"] if spec.selection.refit_all else [])
    positions = np.concatenate([getattr(rows, split) for split in fit_splits])
    x_test = rows.x.iloc[rows.test]
    if not spec.selection.refit_all and rows.folds:  # the candidate was fitted on train + validation
        return FinalModel(
            best.model, fit_splits, len(rows.fit), best.test, "final", best.latency, best.test_outputs
        )
    kept = np.asarray(plan.fit_rows(rows.screened.iloc[positions])[0].index)
    x_fit, y_fit = rows.x.loc[kept], rows.y[kept]
    preprocessor = build_preprocessor(x_fit, spec.transforms).fit(x_fit)
    features = np.asarray(preprocessor.transform(x_fit), dtype=np.float64)
    threads = threads_for(best.name, features.shape, jobs)
    estimator = make_estimator(best.name, task, dict(best.params), seed=spec.seed, jobs=threads)
    estimator.fit(features, y_fit)
    model = Pipeline([("preprocess", preprocessor), ("model", estimator)])
    outputs = predict_outputs(model, x_test, task)
    serve_on_one_thread(estimator)
    held_out = not spec.selection.refit_all
    test = score(task, rows.y[rows.test], *outputs) if held_out else best.test
    latency = measure_latency(model, x_test, task)
    return FinalModel(
        model, fit_splits, len(kept), test, "final" if held_out else "selected", latency, outputs
    )


def make_bundle(  # noqa: PLR0913 - the pieces a bundle is made of, each from another step
    spec: PipelineSpec,
    task: Task,
    classes: list[str] | None,
    rows: Rows,
    best: CandidateOutcome,
    final: FinalModel,
    cleaning: CleaningReport,
    data_hash: str,
) -> tuple[ModelBundle, str | None]:
    """The final model's bundle, and why ONNX export was skipped (None when it converted)."""
    x_test = rows.x.iloc[rows.test]
    pred, proba = final.test_outputs
    expected = proba if task == "classification" else pred
    onnx_bytes, onnx_info = export_onnx(final.model, x_test, task=task, expected=expected)
    features = infer_schema(rows.screened.loc[:, list(rows.x.columns)])
    # Features are profiled on the tuning rows; predictions on rows the selected model did not fit
    # (validation, or test under CV): the distribution production predictions should resemble.
    unseen = best.val_outputs[0] if len(best.val_outputs[0]) else best.test_outputs[0]
    profile = build_profile(rows.x.iloc[rows.pool], features, unseen, task=task, classes=classes)
    metrics = {"validation": best.validation, "test": final.test, "selection_test": best.test}
    if best.validation_std:
        metrics["validation_std"] = best.validation_std
    metadata = BundleMetadata(
        name=spec.name,
        task=task,
        target=spec.target,
        classes=classes,
        features=features,
        dropped_columns=cleaning.dropped_columns,
        candidate=best.name,
        params=_jsonable(best.params),
        metrics=metrics,
        latency=final.latency,
        lineage=lineage.collect(spec, data_hash, fit_splits=final.fit_splits),
        reference_profile=profile,
        reference_rows=reference_rows(final.model, x_test, task),
        onnx=onnx_info,
        monitoring=spec.monitoring,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    reference = reference_sample(rows.x.iloc[rows.pool], features, seed=spec.seed)
    # A model fitted on the test split too has no held-out rows left: nothing honest to keep.
    holdout = None if spec.selection.refit_all else holdout_sample(spec, classes, rows, features)
    bundle = ModelBundle(
        model=final.model, metadata=metadata, onnx_model=onnx_bytes, reference=reference, holdout=holdout
    )
    return bundle, None if onnx_info.converted else onnx_info.reason


def holdout_sample(
    spec: PipelineSpec, classes: list[str] | None, rows: Rows, features: list[FeatureSchema]
) -> pd.DataFrame:
    """A seeded sample (at most `HOLDOUT_ROWS`) of the test split: the raw feature columns as
    drift tests read them, plus the target under its spec name (class labels as text, or floats)."""
    positions = sample_positions(len(rows.test), cap=HOLDOUT_ROWS, seed=spec.seed)
    taken = rows.test[positions]
    frame = reference_sample(rows.x.iloc[taken], features, cap=len(taken), seed=spec.seed)
    target = rows.y[taken]
    if classes is not None:
        frame[spec.target] = pd.Series(
            np.asarray(classes, dtype=object)[target.astype(np.intp)], dtype=object
        )
    else:
        frame[spec.target] = target.astype(np.float64)
    return frame


def reference_rows(model: Any, x: pd.DataFrame, task: Task) -> list[dict[str, Any]]:
    """A few raw input rows with the native model's outputs, to warm and check engines."""
    head = x.head(REFERENCE_ROWS)
    pred, proba = predict_outputs(model, head, task)
    out = []
    for i in range(len(head)):
        features = {k: _jsonable_value(v) for k, v in head.iloc[i].items()}
        entry: dict[str, Any] = {"features": features, "prediction": _jsonable_value(pred[i])}
        if proba is not None:
            entry["probabilities"] = [float(p) for p in proba[i]]
        out.append(entry)
    return out


def _jsonable_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable_value(v) for k, v in params.items()}
