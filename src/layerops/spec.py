"""The pipeline spec: one YAML file that declares a whole training run.

`load_spec(path)` refuses an invalid spec before any work, with one line per problem naming the
key path, e.g. `candidates[2].params.max_depth: must be > 0`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from layerops.drift_thresholds import MonitoringConfig
from layerops.errors import SpecError

Task = Literal["classification", "regression"]

CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
AUTO_CV_FOLDS = 5
"""k of the cross-validation `tuning.cv_folds: null` chooses for a small training split."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlSource(_Strict):
    """A SQL query run through SQLAlchemy."""

    url: str
    """SQLAlchemy URL, e.g. `sqlite:///data.db` or `postgresql://host/db`."""
    query: str
    """The query whose result is the data set."""


class DataSpec(_Strict):
    """Where the data comes from: a file path, an http(s) URL, or a SQL query."""

    path: str | None = None
    """A local path (relative to the spec file) or an http(s) URL."""
    format: Literal["csv", "parquet", "json", "jsonl"] | None = None
    """File format; inferred from the extension when omitted."""
    sql: SqlSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give exactly one of 'path' or 'sql'")
        return self


class ColumnRule(_Strict):
    """What one column must look like (checked by the validation step)."""

    dtype: Literal["float", "int", "category", "bool", "str"] | None = None
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    max_missing_share: float | None = Field(default=None, ge=0, le=1)


class ValidationSpec(_Strict):
    """Expectations on the loaded frame, checked before cleaning."""

    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    max_missing_share: float = Field(default=0.5, ge=0, le=1)
    """Largest share of missing values any column may have."""


class OutlierSpec(_Strict):
    """Row-wise outlier removal on numeric columns."""

    method: Literal["iqr", "zscore", "none"] = "iqr"
    threshold: float = Field(default=3.0, gt=0)
    """IQR multiplier (iqr) or |z| limit (zscore)."""
    max_share: float = Field(default=0.02, gt=0, le=1)
    """A column whose rule would flag more than this share of the training rows has a heavy tail
    or many repeated values (e.g. pixels mostly 0), not outliers: no bound is set on it."""


class CleaningSpec(_Strict):
    """What the cleaner may drop. It never changes a value."""

    required: list[str] = Field(default_factory=list)
    """Rows missing any of these columns are dropped (the target always is)."""
    drop_duplicates: bool = True
    drop_constant: bool = True
    outliers: OutlierSpec = OutlierSpec()
    collinearity_threshold: float | None = Field(default=0.98, gt=0, le=1)
    """Drop one of each numeric pair with |r| above this; null disables."""
    drop_columns: list[str] = Field(default_factory=list)
    """Columns to drop outright (ids, leaks)."""


class SplitSpec(_Strict):
    """Train/validation/test split; stratified for classification."""

    validation: float = Field(default=0.2, gt=0, lt=1)
    test: float = Field(default=0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitSpec:
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% for training")
        return self


class TransformSpec(_Strict):
    """Preprocessing chosen per dtype, fitted on the train split only."""

    numeric_impute: Literal["median", "mean", "most_frequent"] = "median"
    scale: Literal["standard", "minmax", "robust", "none"] = "standard"
    categorical_impute: Literal["most_frequent", "constant"] = "most_frequent"
    encode: Literal["onehot", "ordinal"] = "onehot"
    max_categories: int | None = Field(default=50, gt=0)


class CandidateSpec(_Strict):
    """One candidate model and its search space.

    A parameter value is fixed when scalar, a choice when a list, and a range when a mapping
    `{low, high, log?}` (integers when both bounds are integers).
    """

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    trials: int | None = Field(default=None, gt=0)
    """Overrides the tuning budget's trial count for this candidate."""


class TuningSpec(_Strict):
    """The hyperparameter search budget per candidate (Optuna, seeded TPE)."""

    trials: int = Field(default=10, gt=0)
    """Trials per candidate, the library's defaults first (see `defaults_first`)."""
    timeout_seconds: float | None = Field(default=None, gt=0)
    cv_folds: int | None = Field(default=None, ge=0)
    """None: k-fold CV when the training split has fewer than `cv_max_rows` rows, else the
    validation split; 0: always the validation split; k >= 2: always k-fold CV."""
    cv_repeats: int = Field(default=2, gt=0)
    """How many times the k folds are drawn again (repeated, stratified for classification)."""
    cv_max_rows: int = Field(default=2000, ge=0)
    """With `cv_folds: null`, cross-validate when the training split is smaller than this."""
    defaults_first: bool = True
    """The first trial of every candidate is the library's default parameters."""

    @model_validator(mode="after")
    def _folds(self) -> TuningSpec:
        if self.cv_folds == 1:
            raise ValueError("cv_folds must be 0 (validation split) or at least 2")
        return self

    def folds_for(self, train_rows: int) -> int:
        """The k of k-fold CV for a training split of `train_rows` rows; 0 for the validation split."""
        if self.cv_folds is None:
            return AUTO_CV_FOLDS if train_rows < self.cv_max_rows else 0
        return self.cv_folds


class SelectionSpec(_Strict):
    """How the winner is chosen (a metric on the validation split or the CV folds) and refitted."""

    metric: str | None = None
    """Default: f1_macro (classification) or rmse (regression). Ties are broken by a second
    metric (log_loss; for regression rmse, or mae when ranking by rmse), then single-row
    latency, then model size."""
    refit_all: bool = False
    """The winner is refitted on train + validation; true adds the test split too (its test
    metric is then the selected model's, fitted without the test rows)."""


class PipelineSpec(_Strict):
    """A whole training run, from the data source to the registered model name."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    """The model name to register under."""
    description: str = ""
    data: DataSpec | None = None
    """Where the data comes from; None when the caller hands the data over (the Python API)."""
    target: str
    task: Task | None = None
    """Inferred from the target when omitted."""
    seed: int = 42
    validation: ValidationSpec = ValidationSpec()
    cleaning: CleaningSpec = CleaningSpec()
    split: SplitSpec = SplitSpec()
    transforms: TransformSpec = TransformSpec()
    candidates: list[CandidateSpec] = Field(min_length=1)
    tuning: TuningSpec = TuningSpec()
    selection: SelectionSpec = SelectionSpec()
    monitoring: MonitoringConfig = MonitoringConfig()
    """Drift thresholds the server and `layerops drift` apply to this model (stored in the bundle)."""

    base_dir: Path = Field(default=Path("."), exclude=True)
    """The folder relative paths resolve against (the spec file's folder)."""
    spec_file: Path | None = Field(default=None, exclude=True)
    """The file the spec was read from (None for a spec given as a dict or object)."""

    @model_validator(mode="after")
    def _metric_fits_task(self) -> PipelineSpec:
        metric = self.selection.metric
        known = CLASSIFICATION_METRICS + REGRESSION_METRICS
        if metric is not None and metric not in known:
            raise ValueError(f"selection.metric: unknown metric {metric!r}; choose one of {', '.join(known)}")
        if metric and self.task == "classification" and metric not in CLASSIFICATION_METRICS:
            raise ValueError(f"selection.metric: {metric!r} is not a classification metric")
        if metric and self.task == "regression" and metric not in REGRESSION_METRICS:
            raise ValueError(f"selection.metric: {metric!r} is not a regression metric")
        return self

    def selection_metric(self, task: Task) -> str:
        """The metric that ranks candidates for `task`."""
        return self.selection.metric or ("f1_macro" if task == "classification" else "rmse")

    def resolve_path(self, path: str) -> str:
        """A data path as given, resolved against the spec's folder unless a URL or absolute."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str((self.base_dir / path).resolve())

    def content_hash(self) -> str:
        """SHA-256 of the spec's content (not its location): part of the lineage."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


# -- candidate names and their parameter rules -----------------------------------------------

_Rule = tuple[Callable[[Any], bool], str]
_POSITIVE: _Rule = (lambda v: v > 0, "must be > 0")
_NON_NEGATIVE: _Rule = (lambda v: v >= 0, "must be >= 0")
_FRACTION: _Rule = (lambda v: 0 < v <= 1, "must be in (0, 1]")
_AT_LEAST_2: _Rule = (lambda v: v >= 2, "must be >= 2")

CANDIDATE_PARAMS: dict[str, dict[str, _Rule | None]] = {
    "baseline": {},
    "linear": {"C": _POSITIVE, "alpha": _NON_NEGATIVE, "max_iter": _POSITIVE},
    "decision_tree": {
        "max_depth": _POSITIVE,
        "min_samples_split": _AT_LEAST_2,
        "min_samples_leaf": _POSITIVE,
        "criterion": None,
    },
    "random_forest": {
        "n_estimators": _POSITIVE,
        "max_depth": _POSITIVE,
        "min_samples_split": _AT_LEAST_2,
        "min_samples_leaf": _POSITIVE,
        "max_features": None,
        "n_jobs": None,
    },
    "xgboost": {
        "n_estimators": _POSITIVE,
        "max_depth": _POSITIVE,
        "learning_rate": _POSITIVE,
        "subsample": _FRACTION,
        "colsample_bytree": _FRACTION,
        "min_child_weight": _NON_NEGATIVE,
        "reg_lambda": _NON_NEGATIVE,
        "n_jobs": None,
    },
    "lightgbm": {
        "n_estimators": _POSITIVE,
        "max_depth": None,
        "num_leaves": _AT_LEAST_2,
        "learning_rate": _POSITIVE,
        "subsample": _FRACTION,
        "colsample_bytree": _FRACTION,
        "min_child_samples": _POSITIVE,
        "reg_lambda": _NON_NEGATIVE,
        "n_jobs": None,
    },
}
"""Every candidate a spec may name, with the parameters it accepts and their constraints."""


def _param_values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[k] for k in ("low", "high") if k in value]
    if isinstance(value, list):
        return value
    return [value]


def _check_range(value: dict[str, Any]) -> str | None:
    extra = set(value) - {"low", "high", "log", "step"}
    if extra or "low" not in value or "high" not in value:
        return "a range needs exactly 'low' and 'high' (and optionally 'log', 'step')"
    low, high = value["low"], value["high"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        return "range bounds must be numbers"
    if low > high:
        return "range 'low' must not exceed 'high'"
    if value.get("log") and low <= 0:
        return "a log range needs 'low' > 0"
    return None


def _candidate_problems(spec: PipelineSpec) -> list[str]:  # noqa: C901 - one check per spec rule, listed flat
    problems: list[str] = []
    seen: set[str] = set()
    for index, candidate in enumerate(spec.candidates):
        where = f"candidates[{index}]"
        if candidate.name not in CANDIDATE_PARAMS:
            known = ", ".join(CANDIDATE_PARAMS)
            problems.append(f"{where}.name: unknown candidate {candidate.name!r}; choose one of {known}")
            continue
        if candidate.name in seen:
            problems.append(f"{where}.name: candidate {candidate.name!r} is listed twice")
        seen.add(candidate.name)
        rules = CANDIDATE_PARAMS[candidate.name]
        for param, value in candidate.params.items():
            key = f"{where}.params.{param}"
            if param not in rules:
                allowed = ", ".join(rules) or "none"
                problems.append(f"{key}: unknown parameter for {candidate.name}; allowed: {allowed}")
                continue
            if isinstance(value, dict):
                message = _check_range(value)
                if message:
                    problems.append(f"{key}: {message}")
                    continue
            if isinstance(value, list) and not value:
                problems.append(f"{key}: a choice list must not be empty")
                continue
            rule = rules[param]
            if rule is None:
                continue
            check, message = rule
            for item in _param_values(value):
                if item is None:
                    continue
                if not isinstance(item, int | float) or isinstance(item, bool) or not check(item):
                    problems.append(f"{key}: {message}")
                    break
    return problems


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_spec(
    raw: Any, *, base_dir: Path = Path("."), source: str = "spec", spec_file: Path | None = None
) -> PipelineSpec:
    """Validate a parsed YAML/JSON document as a `PipelineSpec`, or raise `SpecError`."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: the spec must be a mapping of keys, got {type(raw).__name__}")
    try:
        spec = PipelineSpec.model_validate({**raw, "base_dir": base_dir, "spec_file": spec_file})
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = _format_loc(tuple(error["loc"]))
            message = str(error["msg"]).removeprefix("Value error, ")
            if message.startswith("selection.metric:"):
                lines.append(message)
            else:
                lines.append(f"{loc}: {message}" if loc else message)
        raise _spec_error(source, lines) from None
    problems = _candidate_problems(spec)
    if problems:
        raise _spec_error(source, problems)
    return spec


def _spec_error(source: str, problems: list[str]) -> SpecError:
    """One line for one problem; a count and one line per problem otherwise."""
    if len(problems) == 1:
        return SpecError(f"{source}: {problems[0]}")
    return SpecError(f"{source}: {len(problems)} problems\n  " + "\n  ".join(problems))


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec file; relative data paths resolve against its folder."""
    file = Path(path)
    if not file.is_file():
        raise SpecError(f"{file}: spec file not found")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{file}: not valid YAML{where}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{file}: not a UTF-8 text file") from None
    return parse_spec(raw, base_dir=file.resolve().parent, source=str(file), spec_file=file.resolve())
