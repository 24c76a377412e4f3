"""The training runner: data → validation → screening → split → learned cleaning → candidates →
selection → refit → bundle.

The runner knows no storage: it gets the spec and a `ModelRepository` (or None for a dry run)
as arguments. Nothing is registered unless every step before registration succeeded.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from layerops.bundle import ModelBundle, save_bundle
from layerops.errors import TrainingError
from layerops.repository.api import CandidateRun, ModelRepository, ModelVersion, RunInfo, TrainingRun
from layerops.spec import PipelineSpec, Task
from layerops.training import lineage
from layerops.training.cleaning import CleaningPlan, CleaningReport, check_left, learn, screen
from layerops.training.cores import available_cores
from layerops.training.dataio import dataset_sha256, training_frame
from layerops.training.distributed import on_dask
from layerops.training.final import FinalModel, Rows, make_bundle, model_bytes, refit
from layerops.training.fitting import CandidateRunner, InProcess, plan_fits
from layerops.training.reporting import Reporter, SilentReporter
from layerops.training.selection import CandidateOutcome, rank
from layerops.training.transform import encode_target, fold_count, infer_task, prepare_features, split_indices
from layerops.training.validation import validate_frame

if TYPE_CHECKING:
    from distributed import Client


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
    rows: Rows
    plan: CleaningPlan
    classes: list[str] | None


RepositorySource = ModelRepository | Callable[[], ModelRepository]
"""A repository, or a callable that returns one when it is first needed (after training)."""


def train(  # noqa: PLR0913 - keyword-only options of a public function
    spec: PipelineSpec,
    repository: RepositorySource | None,
    *,
    reporter: Reporter | None = None,
    data: pd.DataFrame | None = None,
    expect_sha256: str | None = None,
    jobs: int | None = None,
    tags: dict[str, str] | None = None,
    dask: str | Client | None = None,
) -> TrainingResult:
    """Run the whole pipeline; register the final model in `repository` unless it is None.

    `repository` may be a callable (e.g. a future's `result`) so that opening it — importing
    MLflow, migrating a new database — overlaps with training instead of preceding it. `data`
    replaces the spec's source (whose `data` must then be None: the lineage says so). With
    `expect_sha256` (a reproduction), data with another content hash stops the run before training.
    Every model, and the native BLAS/OpenMP pools under them, use at most `jobs` threads (default:
    the cores this process may run on), so parallel trainings never oversubscribe the machine.
    `tags` are added to the lineage tags of the run and the registered version (e.g. a retrain's).
    With `dask` (`"local:N"`, a scheduler address or a `distributed.Client`) every candidate's
    tuning and fit is a task on that cluster, each model on `jobs` threads (default: its worker's);
    the leaderboard is the one this process computes alone (see `distributed`).
    """
    threads = available_cores() if jobs is None else jobs
    if threads < 1:
        raise TrainingError(f"jobs must be at least 1, not {threads}")
    report = reporter or SilentReporter()
    runner: contextlib.AbstractContextManager[CandidateRunner] = (
        contextlib.nullcontext(InProcess(threads))
        if dask is None
        else on_dask(dask, jobs=jobs, note=report.stage)
    )
    with threadpool_limits(limits=threads), runner as candidates:
        return _train(spec, repository, report, data, expect_sha256, threads, tags, candidates)


def _train(  # noqa: PLR0913 - `train`'s options, resolved
    spec: PipelineSpec,
    repository: RepositorySource | None,
    report: Reporter,
    data: pd.DataFrame | None,
    expect_sha256: str | None,
    jobs: int,
    extra_tags: dict[str, str] | None,
    runner: CandidateRunner,
) -> TrainingResult:
    report.stage("loading data")
    raw = training_frame(spec, data)
    data_hash = lineage.check_data(spec, dataset_sha256(raw), expect_sha256)
    report.stage(f"loaded {len(raw):,} rows × {raw.shape[1]} columns; validating")
    validate_frame(raw, spec.validation, target=spec.target)
    screened, cleaning = screen(raw, spec.cleaning, target=spec.target)
    task: Task = spec.task or infer_task(screened[spec.target])
    run, cleaning = _split_and_clean(spec, task, screened, cleaning, report)
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
    outcomes = runner.fit_all(plan_fits(spec, task, run.metric, rows), spec.candidates, report)
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
    return _Run(spec, task, spec.selection_metric(task), report, rows, plan, classes), cleaning


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
