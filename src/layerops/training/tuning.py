"""Hyperparameter search with Optuna (seeded TPE), scored on the validation split or by repeated
k-fold cross-validation on the training rows; the library's defaults are the first trial."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

from layerops.errors import TrainingError
from layerops.spec import LOWER_IS_BETTER, Task
from layerops.training.candidates import Space, is_fixed, make_estimator, threads_for
from layerops.training.evaluation import better, predict_outputs, score

TrialCallback = Callable[[int, float], None]
"""Called after each trial with its number (from 1) and its score."""

DEFAULTS_ATTR = "layerops.defaults"
"""The user attribute that marks the trial of the library's default parameters."""

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(x_train, y_train, x_val, y_val), preprocessed; the validation pair is empty under CV."""


@dataclass(frozen=True)
class Search:
    """How a candidate is searched: the metric, the budget, and how trials are scored."""

    metric: str
    trials: int
    timeout: float | None = None
    folds: int = 0
    """0: fit on train, score on the validation split; k >= 2: repeated k-fold CV on train."""
    repeats: int = 1
    seed: int = 0
    jobs: int | None = None
    """Threads per model (default: the cores available)."""
    defaults: tuple[dict[str, Any], frozenset[str]] | None = None
    """The library-defaults first trial (`candidates.default_trial`); None: no such trial."""


@dataclass(frozen=True)
class TuningResult:
    """The best parameters found, every trial's parameters and score, and the best fitted model.

    `model` is the best trial's estimator fitted on the whole train split; it is None after
    cross-validation (each trial fitted folds only), and the caller refits. `val_outputs` are
    that model's predictions (and probabilities) on the validation split, so the caller need
    not predict them again; None with `model`. Under cross-validation `fold_mean` and `fold_std`
    hold every metric of the best trial over its folds.
    """

    best_params: dict[str, Any]
    best_score: float
    trials: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    model: Any = None
    val_outputs: tuple[np.ndarray, np.ndarray | None] | None = None
    fold_mean: dict[str, float] = field(default_factory=dict)
    fold_std: dict[str, float] = field(default_factory=dict)
    study: optuna.Study | None = field(default=None, repr=False)


def _suggest(trial: optuna.Trial, name: str, value: Any) -> Any:
    if isinstance(value, list):
        return trial.suggest_categorical(name, value)
    if isinstance(value, dict):
        low, high = value["low"], value["high"]
        log = bool(value.get("log", False))
        if isinstance(low, int) and isinstance(high, int):
            step = int(value.get("step", 1))
            return trial.suggest_int(name, low, high, step=1 if log else step, log=log)
        return trial.suggest_float(name, float(low), float(high), log=log)
    return value


class _Objective:
    """Fits and scores one parameter set; remembers the best model fitted on the whole train split."""

    def __init__(self, name: str, task: Task, data: Arrays, search: Search) -> None:
        self.name, self.task, self.data, self.search = name, task, data, search
        self.n_classes = _n_classes(data[1], data[3]) if task == "classification" else 0
        self.best_value = math.nan
        self.best_model: Any = None
        self.best_outputs: tuple[np.ndarray, np.ndarray | None] | None = None
        self.fold_stats: list[tuple[dict[str, float], dict[str, float]]] = []
        """Per call, the mean and standard deviation of every metric over the folds."""

    def __call__(self, params: dict[str, Any]) -> float:
        x_train, y_train, x_val, y_val = self.data
        if self.search.folds >= 2:
            folds = [
                self._fit_score(params, x_train[f], y_train[f], x_train[s], y_train[s])[0]
                for f, s in self._splitter().split(x_train, y_train)
            ]
            names = [k for k in folds[0] if all(k in fold for fold in folds)]
            mean = {k: float(np.mean([fold[k] for fold in folds])) for k in names}
            std = {k: float(np.std([fold[k] for fold in folds])) for k in names}
            self.fold_stats.append((mean, std))
            return mean.get(self.search.metric, math.nan)
        metrics, model, outputs = self._fit_score(params, x_train, y_train, x_val, y_val)
        value = metrics.get(self.search.metric, math.nan)
        if not math.isnan(value) and (
            math.isnan(self.best_value) or better(self.search.metric, value, self.best_value)
        ):
            self.best_value, self.best_model = value, model
            self.best_outputs = outputs
        return value

    def _splitter(self) -> RepeatedKFold | RepeatedStratifiedKFold:
        folds, repeats, seed = self.search.folds, self.search.repeats, self.search.seed
        if self.task == "classification":
            return RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
        return RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)

    def _fit_score(
        self, params: dict[str, Any], xf: np.ndarray, yf: np.ndarray, xs: np.ndarray, ys: np.ndarray
    ) -> tuple[dict[str, float], Any, tuple[np.ndarray, np.ndarray | None]]:
        jobs = threads_for(self.name, xf.shape, self.search.jobs)
        model = make_estimator(self.name, self.task, dict(params), seed=self.search.seed, jobs=jobs)
        model.fit(xf, yf)
        pred, proba = predict_outputs(model, xs, self.task)
        outputs = (pred, proba)  # as the model predicts them, before any padding
        if proba is not None and proba.shape[1] != self.n_classes:
            proba = _pad_proba(model, proba, self.n_classes)
        return score(self.task, ys, pred, proba), model, outputs


def tune(
    name: str,
    task: Task,
    space: Space,
    data: Arrays,
    search: Search,
    on_trial: TrialCallback | None = None,
) -> TuningResult:
    """Search `space` for candidate `name`; each trial fits on train and scores `search.metric`.

    `data` is (x_train, y_train, x_val, y_val) already preprocessed. With `search.folds >= 2`
    the score is the mean over repeated k folds of train and the validation pair is not used.
    """
    objective = _Objective(name, task, data, search)
    recorded: list[tuple[dict[str, Any], float]] = []
    if is_fixed(space):
        params = dict(space)
        value = _guard(name, lambda: objective(params))
        recorded.append((params, value))
        if on_trial:
            on_trial(1, value)
        mean, std = objective.fold_stats[0] if objective.fold_stats else ({}, {})
        return TuningResult(params, value, recorded, objective.best_model, objective.best_outputs, mean, std)

    direction: Literal["minimize", "maximize"] = (
        "minimize" if search.metric in LOWER_IS_BETTER else "maximize"
    )
    # ERROR, not WARNING: optuna warns with a traceback about a trial that raised, then re-raises it;
    # the error (a TrainingError, or Ctrl-C's KeyboardInterrupt) is reported once, by the caller.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=search.seed))
    unset: frozenset[str] = frozenset()
    if search.defaults is not None:
        enqueued, unset = search.defaults
        study.enqueue_trial(enqueued, user_attrs={DEFAULTS_ATTR: True})
    stats: dict[int, tuple[dict[str, float], dict[str, float]]] = {}

    def run_trial(trial: optuna.Trial) -> float:
        left = unset if trial.user_attrs.get(DEFAULTS_ATTR) else frozenset()
        params = {key: _suggest(trial, key, value) for key, value in space.items() if key not in left}
        value = objective(params)
        if objective.fold_stats:
            stats[trial.number] = objective.fold_stats[-1]
        recorded.append((params, value))
        if on_trial:
            on_trial(len(recorded), value)
        if math.isnan(value):
            raise optuna.TrialPruned(f"{search.metric} undefined")
        return value

    _guard(name, lambda: study.optimize(run_trial, n_trials=search.trials, timeout=search.timeout, catch=()))
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise TrainingError(f"candidate {name}: no trial produced a {search.metric} score")
    best = study.best_trial
    params = {**{k: v for k, v in space.items() if not isinstance(v, dict | list)}, **best.params}
    mean, std = stats.get(best.number, ({}, {}))
    return TuningResult(
        params,
        float(best.value),  # type: ignore[arg-type]
        recorded,
        objective.best_model,
        objective.best_outputs,
        mean,
        std,
        study,
    )


def _guard(name: str, work: Callable[[], Any]) -> Any:
    try:
        return work()
    except TrainingError:
        raise
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"candidate {name}: {first}") from exc


def _n_classes(*ys: np.ndarray) -> int:
    return int(max(int(y.max()) for y in ys if len(y))) + 1


def _pad_proba(model: Any, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities widened to every class when the fit split lacked some of them."""
    full = np.zeros((proba.shape[0], n_classes))
    full[:, np.asarray(model.classes_, dtype=int)] = proba
    return full
