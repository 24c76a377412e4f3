"""The training runner: data → validation → screening → split → learned cleaning → candidates →
selection → refit → bundle.

The runner knows no storage: it gets the spec and a `ModelRepository` (or None for a dry run)
as arguments. Nothing is registered unless every step before registration succeeded.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from layerops.bundle import ModelBundle, save_bundle
from layerops.errors import TrainingError
from layerops.repository.api import CandidateRun, ModelRepository, ModelVersion, RunInfo, TrainingRun
from layerops.spec import CandidateSpec, PipelineSpec, Task
from layerops.training import lineage
from layerops.training.candidates import (
    default_trial,
    is_fixed,
    make_estimator,
    search_space,
    serve_on_one_thread,
    threads_for,
)
from layerops.training.cleaning import CleaningPlan, CleaningReport, check_left, learn, screen
from layerops.training.cores import available_cores
from layerops.training.dataio import dataset_sha256, training_frame
from layerops.training.evaluation import ResourceMonitor, measure_latency, predict_outputs, score
from layerops.training.final import FinalModel, Rows, make_bundle, model_bytes, refit
from layerops.training.selection import CandidateOutcome, rank
from layerops.training.transform import (
    build_preprocessor,
    encode_target,
    fold_count,
    infer_task,
    prepare_features,
    split_indices,
)
from layerops.training.tuning import Search, tune
from layerops.training.validation import validate_frame


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
class TrainingResult:
    """What a training run produced: the ranked candidates, the final model's bundle, its version."""

    name: str
    task: Task
    metric: str
    leaderboard: list[CandidateOutcome]
    bundle: ModelBundle
    cleaning: CleaningReport
    final: FinalModel
    folds: int = 0
    """k of the cross-validation that scored the trials; 0 when the validation split did."""
    run: RunInfo | None = None
    version: ModelVersion | None = None

    @property
    def winner(self) -> CandidateOutcome:
        """The best candidate by the selection metric (ties broken as `selection.rank` says)."""
        return self.leaderboard[0]

    def metrics(self) -> dict[str, float]:
        """The registered model's metrics, flat: the winner's selection metrics, the final model's
        test metrics and latency, and the selected model's test metrics as `selected_test_*`."""
        out = {k: v for k, v in self.winner.flat_metrics().items() if not k.startswith("test_")}
        out.update({f"test_{k}": v for k, v in self.final.test.items()})
        out.update({f"selected_test_{k}": v for k, v in self.winner.test.items()})
        out.update(self.final.latency)
        out["fit_rows"] = float(self.final.fit_rows)
        return out


@dataclass(frozen=True)
class _Run:
    """What every step of one training run shares."""

    spec: PipelineSpec
    task: Task
    metric: str
    report: Reporter
    jobs: int
    rows: Rows
    plan: CleaningPlan
    classes: list[str] | None


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
    tags: dict[str, str] | None = None,
) -> TrainingResult:
    """Run the whole pipeline; register the final model in `repository` unless it is None.

    `repository` may be a callable (e.g. a future's `result`) so that opening it — importing
    MLflow, migrating a new database — overlaps with training instead of preceding it. `data`
    replaces the spec's source (whose `data` must then be None: the lineage says so). With
    `expect_sha256` (a reproduction), data with another content hash stops the run before training.
    Every model, and the native BLAS/OpenMP pools under them, use at most `jobs` threads (default:
    the cores this process may run on), so parallel trainings never oversubscribe the machine.
    `tags` are added to the lineage tags of the run and the registered version (e.g. a retrain's).
    """
    threads = available_cores() if jobs is None else jobs
    if threads < 1:
        raise TrainingError(f"jobs must be at least 1, not {threads}")
    with threadpool_limits(limits=threads):
        return _train(spec, repository, reporter or SilentReporter(), data, expect_sha256, threads, tags)


def _train(
    spec: PipelineSpec,
    repository: RepositorySource | None,
    report: Reporter,
    data: pd.DataFrame | None,
    expect_sha256: str | None,
    jobs: int,
    extra_tags: dict[str, str] | None,
) -> TrainingResult:
    report.stage("loading data")
    raw = training_frame(spec, data)
    data_hash = lineage.check_data(spec, dataset_sha256(raw), expect_sha256)
    report.stage(f"loaded {len(raw):,} rows × {raw.shape[1]} columns; validating")
    validate_frame(raw, spec.validation, target=spec.target)
    screened, cleaning = screen(raw, spec.cleaning, target=spec.target)
    task: Task = spec.task or infer_task(screened[spec.target])
    run, cleaning = _split_and_clean(spec, task, screened, cleaning, report, jobs)
    for line in cleaning.lines():
        report.stage(f"cleaning: {line}")
    rows = run.rows
    scored_by = (
        f"{rows.folds}-fold CV × {spec.tuning.cv_repeats} on {len(rows.pool):,} train + validation rows"
        if rows.folds
        else f"the {len(rows.validation):,} validation rows"
    )
    report.stage(
        f"{task}: {len(rows.train):,} train / {len(rows.validation):,} validation / "
        f"{len(rows.test):,} test rows; ranking by {run.metric} on {scored_by}"
    )
    getattr(repository, "start", lambda: None)()  # a background open (OpenInBackground) begins now
    outcomes = _train_candidates(run)
    outcomes = rank(outcomes, run.metric, task, size=model_bytes)
    best = outcomes[0]
    decided = f"; tie broken by {best.tie_break}" if best.tie_break else ""
    report.stage(
        f"winner: {best.name} ({run.metric} = {best.validation.get(run.metric, math.nan):.4f}{decided})"
    )
    if spec.selection.refit_all or not rows.folds:  # under CV the winner was fitted on train + validation
        report.stage(
            f"refitting {best.name} on train + validation{' + test' if spec.selection.refit_all else ''}"
        )
    final = refit(spec, task, best, rows, run.plan, jobs)
    report.stage("exporting the final model to ONNX and checking parity on the test split")
    bundle, skipped = make_bundle(spec, task, run.classes, rows, best, final, cleaning, data_hash)
    if skipped:
        report.stage(f"ONNX export skipped: {skipped}")
    result = TrainingResult(spec.name, task, run.metric, outcomes, bundle, cleaning, final, rows.folds)
    if repository is None:
        return result
    repository = repository if isinstance(repository, ModelRepository) else repository()
    _register(spec, result, repository, report, extra_tags or {})
    return result


def _register(
    spec: PipelineSpec,
    result: TrainingResult,
    repository: ModelRepository,
    report: Reporter,
    extra_tags: dict[str, str],
) -> None:
    tags = {**lineage.tags(result.bundle.metadata.lineage, spec), **extra_tags}  # the run's and the version's
    report.stage("logging runs and registering the final model")
    with tempfile.TemporaryDirectory(prefix="layerops-bundle-") as tmp:
        folder = Path(tmp) / "bundle"
        save_bundle(result.bundle, folder)
        run_record = TrainingRun(
            pipeline=spec.name,
            params=_run_params(spec, result.task, result.metric, result.folds),
            tags=tags,
            candidates=[
                CandidateRun(o.name, dict(o.params), o.flat_metrics(), o.resources, o.trials)
                for o in result.leaderboard
            ],
            winner=result.winner.name,
            leaderboard_csv=leaderboard_csv(result),
            metrics=result.metrics(),
        )
        result.run = repository.log_training(run_record, folder)
    result.version = repository.register(spec.name, result.run, tags=tags, description=spec.description)
    report.stage(f"registered {spec.name} version {result.version.version}")


def _split_and_clean(
    spec: PipelineSpec,
    task: Task,
    screened: pd.DataFrame,
    screening: CleaningReport,
    report: Reporter,
    jobs: int,
) -> tuple[_Run, CleaningReport]:
    """Split the screened rows, learn the cleaning on the rows candidates fit on, apply it."""
    y, classes = encode_target(screened[spec.target], task)
    train, validation, test = split_indices(y, spec.split, task=task, seed=spec.seed)
    folds = fold_count(task, y[np.concatenate([train, validation])], spec.tuning.folds_for(len(train)))
    pool = np.concatenate([train, validation]) if folds else train
    plan = learn(screened.iloc[pool], spec.cleaning, target=spec.target)
    fitted, fit_drops = plan.fit_rows(plan.columns(screened.iloc[pool]))
    scored = np.setdiff1d(np.arange(len(screened)), pool)
    outlying, _ = plan.outlying(screened.iloc[scored])
    cleaning = CleaningReport(
        screening.rows_in,
        screening.rows_out,
        screening.row_drops,
        {**screening.dropped_columns, **plan.dropped_columns},
        fit_drops,
        int(outlying.sum()),
        plan.unbounded,
    )
    check_left(fitted, cleaning, spec.target)
    x = prepare_features(plan.columns(screened).drop(columns=[spec.target]))
    rows = Rows(screened, x, y, train, validation, test, folds, np.asarray(fitted.index))
    return _Run(spec, task, spec.selection_metric(task), report, jobs, rows, plan, classes), cleaning


def _train_candidates(run: _Run) -> list[CandidateOutcome]:
    """Tune and evaluate every candidate on the same preprocessed rows."""
    rows = run.rows
    x_fit = rows.x.loc[rows.fit]
    preprocessor = build_preprocessor(x_fit, run.spec.transforms).fit(x_fit)
    x_train = np.asarray(preprocessor.transform(x_fit), dtype=np.float64)
    if rows.folds:  # no validation split: the folds of the fit rows score the trials
        x_val, arrays = rows.x.iloc[:0], (x_train, rows.y[rows.fit], x_train[:0], rows.y[:0])
    else:
        x_val = rows.x.iloc[rows.validation]
        x_val_array = np.asarray(preprocessor.transform(x_val), dtype=np.float64)
        arrays = (x_train, rows.y[rows.fit], x_val_array, rows.y[rows.validation])
    return [
        _train_candidate(run, candidate, preprocessor, arrays, x_val) for candidate in run.spec.candidates
    ]


def _train_candidate(
    run: _Run,
    candidate: CandidateSpec,
    preprocessor: Any,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    x_val: pd.DataFrame,
) -> CandidateOutcome:
    spec, task, name, rows = run.spec, run.task, candidate.name, run.rows
    space = search_space(candidate, task)
    budget = 1 if is_fixed(space) else (candidate.trials or spec.tuning.trials)
    fixed, unset = default_trial(candidate, task, space)
    search = Search(
        metric=run.metric,
        trials=budget,
        timeout=spec.tuning.timeout_seconds,
        folds=rows.folds,
        repeats=spec.tuning.cv_repeats,
        seed=spec.seed,
        jobs=run.jobs,
        defaults=(fixed, frozenset(unset)) if spec.tuning.defaults_first else None,
    )
    run.report.candidate_start(name, budget)
    with ResourceMonitor() as monitor:
        tuned = tune(
            name, task, space, arrays, search, lambda number, value: run.report.trial(name, number, value)
        )
        estimator = tuned.model
        if estimator is None:  # cross-validation fitted folds only: refit on all the tuning rows
            jobs = threads_for(name, arrays[0].shape, run.jobs)
            estimator = make_estimator(name, task, dict(tuned.best_params), seed=spec.seed, jobs=jobs)
            estimator.fit(arrays[0], arrays[1])
    model = Pipeline([("preprocess", preprocessor), ("model", estimator)])
    x_test = rows.x.iloc[rows.test]
    # Score with every core; then serve-friendly: one thread answers a row faster than many.
    # The tuned model predicted the validation split already (the same preprocessed rows).
    val_outputs = tuned.val_outputs or (
        predict_outputs(model, x_val, task) if len(x_val) else (np.empty(0), None)
    )
    test_outputs = predict_outputs(model, x_test, task)
    serve_on_one_thread(estimator)
    validation = tuned.fold_mean if rows.folds else score(task, arrays[3], *val_outputs)
    outcome = CandidateOutcome(
        name,
        tuned.best_params,
        validation,
        score(task, rows.y[rows.test], *test_outputs),
        measure_latency(model, x_test, task),
        monitor.metrics(),
        tuned.trials,
        model,
        val_outputs,
        test_outputs,
        validation_std=tuned.fold_std,
    )
    run.report.candidate_end(name, outcome.flat_metrics())
    return outcome


def _run_params(spec: PipelineSpec, task: Task, metric: str, folds: int) -> dict[str, object]:
    return {
        "task": task,
        "target": spec.target,
        "metric": metric,
        "seed": spec.seed,
        "split.validation": spec.split.validation,
        "split.test": spec.split.test,
        "tuning.trials": spec.tuning.trials,
        "tuning.cv_folds": folds,
        "tuning.cv_repeats": spec.tuning.cv_repeats if folds else 0,
        "selection.refit_all": spec.selection.refit_all,
        "candidates": ",".join(c.name for c in spec.candidates),
    }


def leaderboard_rows(result: TrainingResult) -> list[dict[str, Any]]:
    """One flat row per candidate, best first."""
    rows = []
    for place, outcome in enumerate(result.leaderboard, start=1):
        rows.append(
            {
                "rank": place,
                "candidate": outcome.name,
                "tie_break": outcome.tie_break,
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
