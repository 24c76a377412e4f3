"""Hyperparameter search with Optuna (seeded TPE) on the validation split or k-fold CV on train."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
from sklearn.model_selection import KFold, StratifiedKFold

from layerops.errors import TrainingError
from layerops.spec import LOWER_IS_BETTER, Task
from layerops.training.candidates import Space, is_fixed, make_estimator
from layerops.training.evaluation import better, predict_outputs, score

TrialCallback = Callable[[int, float], None]
"""Called after each trial with its number (from 1) and its score."""


@dataclass(frozen=True)
class TuningResult:
    """The best parameters found, every trial's parameters and score, and the best fitted model.

    `model` is the best trial's estimator fitted on the whole train split; it is None after
    cross-validation (each trial fitted folds only), and the caller refits. `val_outputs` are
    that model's predictions (and probabilities) on the validation split, so the caller need
    not predict them again; None with `model`.
    """

    best_params: dict[str, Any]
    best_score: float
    trials: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    model: Any = None
    val_outputs: tuple[np.ndarray, np.ndarray | None] | None = None


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

    def __init__(
        self,
        name: str,
        task: Task,
        data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        *,
        metric: str,
        cv_folds: int,
        seed: int,
        jobs: int | None = None,
    ) -> None:
        self.name, self.task, self.data = name, task, data
        self.metric, self.cv_folds, self.seed, self.jobs = metric, cv_folds, seed, jobs
        self.n_classes = _n_classes(data[1], data[3]) if task == "classification" else 0
        self.best_value = math.nan
        self.best_model: Any = None
        self.best_outputs: tuple[np.ndarray, np.ndarray | None] | None = None
        self.last_outputs: tuple[np.ndarray, np.ndarray | None] | None = None

    def __call__(self, params: dict[str, Any]) -> float:
        x_train, y_train, x_val, y_val = self.data
        if self.cv_folds >= 2:
            splitter = (
                StratifiedKFold(self.cv_folds, shuffle=True, random_state=self.seed)
                if self.task == "classification"
                else KFold(self.cv_folds, shuffle=True, random_state=self.seed)
            )
            scores = [
                self._fit_score(params, x_train[f], y_train[f], x_train[s], y_train[s])[0]
                for f, s in splitter.split(x_train, y_train)
            ]
            return float(np.mean(scores))
        value, model = self._fit_score(params, x_train, y_train, x_val, y_val)
        if not math.isnan(value) and (
            math.isnan(self.best_value) or better(self.metric, value, self.best_value)
        ):
            self.best_value, self.best_model = value, model
            self.best_outputs = self.last_outputs
        return value

    def _fit_score(
        self, params: dict[str, Any], xf: np.ndarray, yf: np.ndarray, xs: np.ndarray, ys: np.ndarray
    ) -> tuple[float, Any]:
        model = make_estimator(self.name, self.task, dict(params), seed=self.seed, jobs=self.jobs)
        model.fit(xf, yf)
        pred, proba = predict_outputs(model, xs, self.task)
        self.last_outputs = (pred, proba)  # as the model predicts them, before any padding
        if proba is not None and proba.shape[1] != self.n_classes:
            proba = _pad_proba(model, proba, self.n_classes)
        return score(self.task, ys, pred, proba).get(self.metric, math.nan), model


def tune(  # noqa: PLR0913 - to become a context object when issue 11 reworks the runner
    name: str,
    task: Task,
    space: Space,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    metric: str,
    trials: int,
    timeout: float | None,
    cv_folds: int,
    seed: int,
    on_trial: TrialCallback | None = None,
    jobs: int | None = None,
) -> TuningResult:
    """Search `space` for candidate `name`; each trial fits on train and scores `metric`.

    `data` is (x_train, y_train, x_val, y_val) already preprocessed. With `cv_folds >= 2` the
    score is the mean over folds of train and the validation split is not used. Each model trains
    on `jobs` threads (default: the cores available).
    """
    objective = _Objective(name, task, data, metric=metric, cv_folds=cv_folds, seed=seed, jobs=jobs)
    recorded: list[tuple[dict[str, Any], float]] = []
    if is_fixed(space):
        params = dict(space)
        value = _guard(name, lambda: objective(params))
        recorded.append((params, value))
        if on_trial:
            on_trial(1, value)
        return TuningResult(params, value, recorded, objective.best_model, objective.best_outputs)

    direction: Literal["minimize", "maximize"] = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    # ERROR, not WARNING: optuna warns with a traceback about a trial that raised, then re-raises it;
    # the error (a TrainingError, or Ctrl-C's KeyboardInterrupt) is reported once, by the caller.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))

    def run_trial(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, value) for key, value in space.items()}
        value = objective(params)
        recorded.append((params, value))
        if on_trial:
            on_trial(len(recorded), value)
        if math.isnan(value):
            raise optuna.TrialPruned(f"{metric} undefined")
        return value

    _guard(name, lambda: study.optimize(run_trial, n_trials=trials, timeout=timeout, catch=()))
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise TrainingError(f"candidate {name}: no trial produced a {metric} score")
    best = study.best_trial
    params = {**{k: v for k, v in space.items() if not isinstance(v, dict | list)}, **best.params}
    return TuningResult(params, float(best.value), recorded, objective.best_model, objective.best_outputs)  # type: ignore[arg-type]


def _guard(name: str, work: Callable[[], Any]) -> Any:
    try:
        return work()
    except TrainingError:
        raise
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"candidate {name}: {first}") from exc


def _n_classes(*ys: np.ndarray) -> int:
    return int(max(int(y.max()) for y in ys)) + 1


def _pad_proba(model: Any, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities widened to every class when the fit split lacked some of them."""
    full = np.zeros((proba.shape[0], n_classes))
    full[:, np.asarray(model.classes_, dtype=int)] = proba
    return full
