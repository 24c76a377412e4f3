"""Hyperparameter search with Optuna (seeded TPE) on the validation split or k-fold CV on train."""

from __future__ import annotations

import logging
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
from layerops.training.evaluation import predict_outputs, score

TrialCallback = Callable[[int, float], None]
"""Called after each trial with its number (from 1) and its score."""


@dataclass(frozen=True)
class TuningResult:
    """The best parameters found and every trial's parameters and score."""

    best_params: dict[str, Any]
    best_score: float
    trials: list[tuple[dict[str, Any], float]] = field(default_factory=list)


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


def _fixed_params(space: Space) -> dict[str, Any]:
    return dict(space)


def tune(
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
) -> TuningResult:
    """Search `space` for candidate `name`; each trial fits on train and scores `metric`.

    `data` is (x_train, y_train, x_val, y_val) already preprocessed. With `cv_folds >= 2` the
    score is the mean over folds of train and the validation split is not used.
    """
    x_train, y_train, x_val, y_val = data

    def evaluate(params: dict[str, Any]) -> float:
        if cv_folds >= 2:
            splitter = (
                StratifiedKFold(cv_folds, shuffle=True, random_state=seed)
                if task == "classification"
                else KFold(cv_folds, shuffle=True, random_state=seed)
            )
            scores = []
            for fit_idx, score_idx in splitter.split(x_train, y_train):
                scores.append(
                    _fit_score(
                        params, x_train[fit_idx], y_train[fit_idx], x_train[score_idx], y_train[score_idx]
                    )
                )
            return float(np.mean(scores))
        return _fit_score(params, x_train, y_train, x_val, y_val)

    def _fit_score(
        params: dict[str, Any], xf: np.ndarray, yf: np.ndarray, xs: np.ndarray, ys: np.ndarray
    ) -> float:
        model = make_estimator(name, task, dict(params), seed=seed)
        model.fit(xf, yf)
        pred, proba = predict_outputs(model, xs, task)
        if proba is not None and proba.shape[1] != _n_classes(y_train, y_val):
            proba = _pad_proba(model, proba, _n_classes(y_train, y_val))
        value = score(task, ys, pred, proba).get(metric, math.nan)
        return value

    recorded: list[tuple[dict[str, Any], float]] = []
    if is_fixed(space):
        params = _fixed_params(space)
        value = _guard(name, lambda: evaluate(params))
        recorded.append((params, value))
        if on_trial:
            on_trial(1, value)
        return TuningResult(params, value, recorded)

    direction: Literal["minimize", "maximize"] = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, value) for key, value in space.items()}
        value = evaluate(params)
        recorded.append((params, value))
        if on_trial:
            on_trial(len(recorded), value)
        if math.isnan(value):
            raise optuna.TrialPruned(f"{metric} undefined")
        return value

    logging.getLogger("optuna").setLevel(logging.WARNING)
    _guard(name, lambda: study.optimize(objective, n_trials=trials, timeout=timeout, catch=()))
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise TrainingError(f"candidate {name}: no trial produced a {metric} score")
    best = study.best_trial
    params = {**{k: v for k, v in space.items() if not isinstance(v, dict | list)}, **best.params}
    return TuningResult(params, float(best.value), recorded)  # type: ignore[arg-type]


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
