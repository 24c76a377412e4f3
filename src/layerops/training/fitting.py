"""One candidate's work (tune, fit, predict, score) as a function of picklable inputs.

The same function runs in this process (`InProcess`) and as a Dask task (`distributed`): with the
same seed on the same arrays it computes the same numbers wherever it runs. Latency is measured
apart (`measure`), by the process that trains: it describes the machine the run is recorded on,
and candidates are timed one at a time, not while others fit beside them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from layerops.spec import CandidateSpec, PipelineSpec, Task, TuningSpec
from layerops.training.candidates import (
    default_trial,
    is_fixed,
    make_estimator,
    search_space,
    serve_on_one_thread,
    threads_for,
)
from layerops.training.evaluation import ResourceMonitor, measure_latency, predict_outputs, score
from layerops.training.final import Rows
from layerops.training.reporting import Reporter
from layerops.training.selection import CandidateOutcome
from layerops.training.transform import build_preprocessor
from layerops.training.tuning import Arrays, Search, TrialCallback, tune


@dataclass(frozen=True)
class FitPlan:
    """What every candidate's fit shares: settings and the preprocessed rows (sent to a worker once)."""

    task: Task
    metric: str
    seed: int
    tuning: TuningSpec
    folds: int
    """k of the cross-validation that scores the trials; 0 when the validation split does."""
    preprocessor: Any
    """Fitted on the fit rows; every candidate's pipeline starts with it."""
    arrays: Arrays
    x_val: pd.DataFrame
    """The validation rows as models take them (empty under CV)."""
    x_test: pd.DataFrame
    y_test: np.ndarray


def plan_fits(spec: PipelineSpec, task: Task, metric: str, rows: Rows) -> FitPlan:
    """Fit the preprocessing on the fit rows and transform what the candidates tune and score on."""
    x_fit = rows.x.loc[rows.fit]
    preprocessor = build_preprocessor(x_fit, spec.transforms).fit(x_fit)
    x_train = np.asarray(preprocessor.transform(x_fit), dtype=np.float64)
    arrays: Arrays
    if rows.folds:  # no validation split: the folds of the fit rows score the trials
        x_val, arrays = rows.x.iloc[:0], (x_train, rows.y[rows.fit], x_train[:0], rows.y[:0])
    else:
        x_val = rows.x.iloc[rows.validation]
        x_val_array = np.asarray(preprocessor.transform(x_val), dtype=np.float64)
        arrays = (x_train, rows.y[rows.fit], x_val_array, rows.y[rows.validation])
    x_test, y_test = rows.x.iloc[rows.test], rows.y[rows.test]
    return FitPlan(
        task, metric, spec.seed, spec.tuning, rows.folds, preprocessor, arrays, x_val, x_test, y_test
    )


def trial_budget(plan: FitPlan, candidate: CandidateSpec) -> int:
    """The most trials `candidate` runs: one when nothing in its space varies."""
    fixed = is_fixed(search_space(candidate, plan.task))
    return 1 if fixed else (candidate.trials or plan.tuning.trials)


def fit_candidate(
    plan: FitPlan, candidate: CandidateSpec, jobs: int | None, on_trial: TrialCallback | None = None
) -> CandidateOutcome:
    """Tune `candidate`, fit the best configuration, predict and score validation and test.

    Models train on `jobs` threads (None: the cores available). The outcome's `latency` is empty:
    `measure` fills it in the process that records the run.
    """
    task, name, tuning = plan.task, candidate.name, plan.tuning
    space = search_space(candidate, task)
    fixed, unset = default_trial(candidate, task, space)
    search = Search(
        metric=plan.metric,
        trials=trial_budget(plan, candidate),
        timeout=tuning.timeout_seconds,
        folds=plan.folds,
        repeats=tuning.cv_repeats,
        seed=plan.seed,
        jobs=jobs,
        defaults=(fixed, frozenset(unset)) if tuning.defaults_first else None,
    )
    arrays = plan.arrays
    with ResourceMonitor() as monitor:
        tuned = tune(name, task, space, arrays, search, on_trial)
        estimator = tuned.model
        if estimator is None:  # cross-validation fitted folds only: refit on all the tuning rows
            threads = threads_for(name, arrays[0].shape, jobs)
            estimator = make_estimator(name, task, dict(tuned.best_params), seed=plan.seed, jobs=threads)
            estimator.fit(arrays[0], arrays[1])
    model = Pipeline([("preprocess", plan.preprocessor), ("model", estimator)])
    # Score with every core; then serve-friendly: one thread answers a row faster than many.
    # The tuned model predicted the validation split already (the same preprocessed rows).
    val_outputs = tuned.val_outputs or (
        predict_outputs(model, plan.x_val, task) if len(plan.x_val) else (np.empty(0), None)
    )
    test_outputs = predict_outputs(model, plan.x_test, task)
    serve_on_one_thread(estimator)
    validation = tuned.fold_mean if plan.folds else score(task, arrays[3], *val_outputs)
    return CandidateOutcome(
        name,
        tuned.best_params,
        validation,
        score(task, plan.y_test, *test_outputs),
        {},
        monitor.metrics(),
        tuned.trials,
        model,
        val_outputs,
        test_outputs,
        validation_std=tuned.fold_std,
    )


def measure(plan: FitPlan, outcome: CandidateOutcome) -> CandidateOutcome:
    """`outcome` with the latency of its model on the test rows, timed in this process."""
    outcome.latency = measure_latency(outcome.model, plan.x_test, plan.task)
    return outcome


class CandidateRunner(Protocol):
    """Where the candidates of a run fit: in this process, or on a Dask cluster."""

    def fit_all(
        self, plan: FitPlan, candidates: list[CandidateSpec], report: Reporter
    ) -> list[CandidateOutcome]:
        """Every candidate's outcome, latency measured, in the order of `candidates`."""
        ...


@dataclass(frozen=True)
class InProcess:
    """Fits the candidates one after another in this process, each model on `jobs` threads."""

    jobs: int

    def fit_all(
        self, plan: FitPlan, candidates: list[CandidateSpec], report: Reporter
    ) -> list[CandidateOutcome]:
        """Every candidate's outcome, in the order of `candidates`."""
        outcomes = []
        for candidate in candidates:
            name = candidate.name
            report.candidate_start(name, trial_budget(plan, candidate))
            outcome = measure(
                plan, fit_candidate(plan, candidate, self.jobs, functools.partial(report.trial, name))
            )
            report.candidate_end(name, outcome.flat_metrics())
            outcomes.append(outcome)
        return outcomes
