"""The training runner: data → validation → cleaning → split → candidates → selection → bundle.

The runner knows no storage: it gets the spec and a `ModelRepository` (or None for a dry run)
as arguments. Nothing is registered unless every step before registration succeeded.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from layerops.bundle import BundleMetadata, ModelBundle, save_bundle
from layerops.bundle.profile import build_profile, infer_schema
from layerops.errors import TrainingError
from layerops.repository.api import CandidateRun, ModelRepository, ModelVersion, RunInfo, TrainingRun
from layerops.spec import PipelineSpec, Task
from layerops.training import lineage
from layerops.training.candidates import is_fixed, make_estimator, search_space
from layerops.training.cleaning import CleaningReport, clean
from layerops.training.cores import available_cores
from layerops.training.dataio import dataset_sha256, training_frame
from layerops.training.evaluation import ResourceMonitor, measure_latency, predict_outputs, score, sort_key
from layerops.training.export import export_onnx
from layerops.training.transform import (
    Splits,
    build_preprocessor,
    encode_target,
    infer_task,
    prepare_features,
    split_frame,
)
from layerops.training.tuning import tune
from layerops.training.validation import validate_frame

REFERENCE_ROWS = 5


class Reporter(Protocol):
    """Receives progress events; the CLI draws them, tests may record them."""

    def stage(self, message: str) -> None:
        """A pipeline step started (or a note about it)."""

    def candidate_start(self, name: str, trials: int) -> None:
        """A candidate's tuning starts with at most `trials` trials."""

    def trial(self, name: str, number: int, value: float) -> None:
        """A trial of candidate `name` finished with score `value`."""

    def candidate_end(self, name: str, metrics: dict[str, float]) -> None:
        """A candidate was refitted and evaluated."""


class SilentReporter:
    """A reporter that ignores every event."""

    def stage(self, message: str) -> None:
        """Ignore."""

    def candidate_start(self, name: str, trials: int) -> None:
        """Ignore."""

    def trial(self, name: str, number: int, value: float) -> None:
        """Ignore."""

    def candidate_end(self, name: str, metrics: dict[str, float]) -> None:
        """Ignore."""


@dataclass
class CandidateOutcome:
    """One trained candidate with everything measured about it."""

    name: str
    params: dict[str, Any]
    validation: dict[str, float]
    test: dict[str, float]
    latency: dict[str, float]
    resources: dict[str, float]
    trials: list[tuple[dict[str, Any], float]]
    model: Pipeline = field(repr=False)
    val_outputs: tuple[np.ndarray, np.ndarray | None] = field(repr=False, default=(np.empty(0), None))
    """Native predictions (and probabilities) on the validation split."""
    test_outputs: tuple[np.ndarray, np.ndarray | None] = field(repr=False, default=(np.empty(0), None))
    """Native predictions (and probabilities) on the test split."""

    def flat_metrics(self) -> dict[str, float]:
        """Validation/test metrics, latency and training time in one flat mapping."""
        out = {f"val_{k}": v for k, v in self.validation.items()}
        out.update({f"test_{k}": v for k, v in self.test.items()})
        out.update(self.latency)
        out["train_seconds"] = self.resources.get("wall_seconds", 0.0)
        return out


@dataclass
class TrainingResult:
    """What a training run produced: the ranked candidates, the winner's bundle, its version."""

    name: str
    task: Task
    metric: str
    leaderboard: list[CandidateOutcome]
    bundle: ModelBundle
    cleaning: CleaningReport
    run: RunInfo | None = None
    version: ModelVersion | None = None

    @property
    def winner(self) -> CandidateOutcome:
        """The best candidate by the selection metric on the validation split."""
        return self.leaderboard[0]


RepositorySource = ModelRepository | Callable[[], ModelRepository]
"""A repository, or a callable that returns one when it is first needed (after training)."""


def train(
    spec: PipelineSpec,
    repository: RepositorySource | None,
    *,
    reporter: Reporter | None = None,
    data: pd.DataFrame | None = None,
    expect_sha256: str | None = None,
    jobs: int | None = None,
) -> TrainingResult:
    """Run the whole pipeline; register the winner in `repository` unless it is None.

    `repository` may be a callable (e.g. a future's `result`) so that opening it — importing
    MLflow, migrating a new database — overlaps with training instead of preceding it. `data`
    replaces the spec's source (whose `data` must then be None: the lineage says so). With
    `expect_sha256` (a reproduction), data with another content hash stops the run before training.
    Every model, and the native BLAS/OpenMP pools under them, use at most `jobs` threads (default:
    the cores this process may run on), so parallel trainings never oversubscribe the machine.
    """
    threads = available_cores() if jobs is None else jobs
    if threads < 1:
        raise TrainingError(f"jobs must be at least 1, not {threads}")
    with threadpool_limits(limits=threads):
        return _train(spec, repository, reporter or SilentReporter(), data, expect_sha256, threads)


def _train(
    spec: PipelineSpec,
    repository: RepositorySource | None,
    report: Reporter,
    data: pd.DataFrame | None,
    expect_sha256: str | None,
    jobs: int,
) -> TrainingResult:
    report.stage("loading data")
    raw = training_frame(spec, data)
    data_hash = lineage.check_data(spec, dataset_sha256(raw), expect_sha256)
    report.stage(f"loaded {len(raw):,} rows × {raw.shape[1]} columns; validating")
    validate_frame(raw, spec.validation, target=spec.target)
    cleaned, cleaning = clean(raw, spec.cleaning, target=spec.target)
    for line in cleaning.lines():
        report.stage(f"cleaning: {line}")

    raw_x = cleaned.drop(columns=[spec.target])
    task: Task = spec.task or infer_task(cleaned[spec.target])
    y, classes = encode_target(cleaned[spec.target], task)
    x = prepare_features(raw_x)
    splits = split_frame(x, y, spec.split, task=task, seed=spec.seed)
    metric = spec.selection_metric(task)
    report.stage(
        f"{task}: {len(splits.x_train):,} train / {len(splits.x_val):,} validation / "
        f"{len(splits.x_test):,} test rows; ranking by validation {metric}"
    )

    preprocessor = build_preprocessor(splits.x_train, spec.transforms).fit(splits.x_train)
    arrays = (
        np.asarray(preprocessor.transform(splits.x_train), dtype=np.float64),
        splits.y_train,
        np.asarray(preprocessor.transform(splits.x_val), dtype=np.float64),
        splits.y_val,
    )
    getattr(repository, "start", lambda: None)()  # a background open (OpenInBackground) begins now
    outcomes = [
        _train_candidate(
            candidate.name, spec, task, metric, preprocessor, arrays, splits, report, candidate.trials, jobs
        )
        for candidate in spec.candidates
    ]
    outcomes.sort(key=lambda o: sort_key(metric, o.validation.get(metric)))
    best = outcomes[0]
    report.stage(f"winner: {best.name} (validation {metric} = {best.validation.get(metric, math.nan):.4f})")

    bundle = _make_bundle(spec, task, classes, raw_x, splits, best, cleaning, data_hash, report)
    result = TrainingResult(spec.name, task, metric, outcomes, bundle, cleaning)
    if repository is None:
        return result
    repository = repository if isinstance(repository, ModelRepository) else repository()
    tags = lineage.tags(bundle.metadata.lineage, spec)  # the run's and the version's
    report.stage("logging runs and registering the winner")
    with tempfile.TemporaryDirectory(prefix="layerops-bundle-") as tmp:
        folder = Path(tmp) / "bundle"
        save_bundle(bundle, folder)
        run_record = TrainingRun(
            pipeline=spec.name,
            params=_run_params(spec, task, metric),
            tags=tags,
            candidates=[
                CandidateRun(o.name, dict(o.params), o.flat_metrics(), o.resources, o.trials)
                for o in outcomes
            ],
            winner=best.name,
            leaderboard_csv=leaderboard_csv(result),
        )
        result.run = repository.log_training(run_record, folder)
    result.version = repository.register(spec.name, result.run, tags=tags, description=spec.description)
    report.stage(f"registered {spec.name} version {result.version.version}")
    return result


def _train_candidate(  # noqa: PLR0913 - to become a context object when issue 11 reworks the runner
    name: str,
    spec: PipelineSpec,
    task: Task,
    metric: str,
    preprocessor: Any,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    splits: Splits,
    report: Reporter,
    trials_override: int | None,
    jobs: int,
) -> CandidateOutcome:
    candidate = next(c for c in spec.candidates if c.name == name)
    space = search_space(candidate, task)
    budget = 1 if is_fixed(space) else (trials_override or spec.tuning.trials)
    report.candidate_start(name, budget)
    with ResourceMonitor() as monitor:
        tuned = tune(
            name,
            task,
            space,
            arrays,
            metric=metric,
            trials=budget,
            timeout=spec.tuning.timeout_seconds,
            cv_folds=spec.tuning.cv_folds,
            seed=spec.seed,
            on_trial=lambda number, value: report.trial(name, number, value),
            jobs=jobs,
        )
        estimator = tuned.model
        if estimator is None:  # cross-validation fitted folds only: refit on the whole train split
            estimator = make_estimator(name, task, dict(tuned.best_params), seed=spec.seed, jobs=jobs)
            estimator.fit(arrays[0], arrays[1])
    model = Pipeline([("preprocess", preprocessor), ("model", estimator)])
    # Score with every core; then serve-friendly: one thread answers a row faster than many.
    # The tuned model predicted the validation split already (the same preprocessed rows).
    val_outputs = tuned.val_outputs or predict_outputs(model, splits.x_val, task)
    test_outputs = predict_outputs(model, splits.x_test, task)
    if "n_jobs" in estimator.get_params():
        estimator.set_params(n_jobs=1)
    validation = score(task, splits.y_val, *val_outputs)
    test = score(task, splits.y_test, *test_outputs)
    latency = measure_latency(model, splits.x_test, task)
    outcome = CandidateOutcome(
        name,
        tuned.best_params,
        validation,
        test,
        latency,
        monitor.metrics(),
        tuned.trials,
        model,
        val_outputs,
        test_outputs,
    )
    report.candidate_end(name, outcome.flat_metrics())
    return outcome


def _make_bundle(  # noqa: PLR0913 - to become a context object when issue 11 reworks the runner
    spec: PipelineSpec,
    task: Task,
    classes: list[str] | None,
    raw_x: pd.DataFrame,
    splits: Splits,
    best: CandidateOutcome,
    cleaning: CleaningReport,
    data_hash: str,
    report: Reporter,
) -> ModelBundle:
    report.stage("exporting the winner to ONNX and checking parity on the test split")
    pred, proba = best.test_outputs
    expected = proba if task == "classification" else pred
    onnx_bytes, onnx_info = export_onnx(best.model, splits.x_test, task=task, expected=expected)
    if not onnx_info.converted:
        report.stage(f"ONNX export skipped: {onnx_info.reason}")
    features = infer_schema(raw_x.loc[:, list(splits.x_train.columns)])
    # Features are profiled on train; predictions on validation, data the model did not fit:
    # the distribution production predictions should resemble.
    profile = build_profile(splits.x_train, features, best.val_outputs[0], task=task, classes=classes)
    metadata = BundleMetadata(
        name=spec.name,
        task=task,
        target=spec.target,
        classes=classes,
        features=features,
        dropped_columns=cleaning.dropped_columns,
        candidate=best.name,
        params=_jsonable(best.params),
        metrics={"validation": best.validation, "test": best.test},
        latency=best.latency,
        lineage=lineage.collect(spec, data_hash),
        reference_profile=profile,
        reference_rows=reference_rows(best.model, splits.x_test, task),
        onnx=onnx_info,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return ModelBundle(model=best.model, metadata=metadata, onnx_model=onnx_bytes)


def reference_rows(model: Any, x: pd.DataFrame, task: Task) -> list[dict[str, Any]]:
    """A few raw input rows with the native model's outputs, to warm and check engines."""
    rows = x.head(REFERENCE_ROWS)
    pred, proba = predict_outputs(model, rows, task)
    out = []
    for i in range(len(rows)):
        features = {k: _jsonable_value(v) for k, v in rows.iloc[i].items()}
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


def _run_params(spec: PipelineSpec, task: Task, metric: str) -> dict[str, object]:
    return {
        "task": task,
        "target": spec.target,
        "metric": metric,
        "seed": spec.seed,
        "split.validation": spec.split.validation,
        "split.test": spec.split.test,
        "tuning.trials": spec.tuning.trials,
        "tuning.cv_folds": spec.tuning.cv_folds,
        "candidates": ",".join(c.name for c in spec.candidates),
    }


def leaderboard_rows(result: TrainingResult) -> list[dict[str, Any]]:
    """One flat row per candidate, best first."""
    rows = []
    for rank, outcome in enumerate(result.leaderboard, start=1):
        rows.append(
            {
                "rank": rank,
                "candidate": outcome.name,
                **outcome.flat_metrics(),
                **{f"system_{k}": v for k, v in outcome.resources.items() if k != "wall_seconds"},
            }
        )
    return rows


def leaderboard_csv(result: TrainingResult) -> str:
    """The leaderboard as CSV text."""
    rows = leaderboard_rows(result)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


__all__ = ["CandidateOutcome", "Reporter", "SilentReporter", "TrainingResult", "train"]
