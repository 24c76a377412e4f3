"""Candidate models: how each is built and what it searches by default.

A search space maps a parameter to a fixed value, a list of choices, or a range
`{"low", "high", "log"?, "step"?}`. The spec's parameters override these defaults key by key.
"""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from layerops.bundle.estimators import OneRuleClassifier, OneRuleRegressor
from layerops.spec import CandidateSpec, Task
from layerops.training.cores import available_cores

Space = dict[str, Any]

_DEFAULT_SPACES: dict[str, Space] = {
    "baseline": {},
    "linear": {},  # filled per task below
    "decision_tree": {"max_depth": {"low": 2, "high": 12}, "min_samples_leaf": {"low": 1, "high": 20}},
    "random_forest": {
        "n_estimators": {"low": 50, "high": 200, "step": 25},
        "max_depth": {"low": 3, "high": 16},
        "min_samples_leaf": {"low": 1, "high": 10},
    },
    "xgboost": {
        "n_estimators": {"low": 50, "high": 300, "step": 25},
        "max_depth": {"low": 2, "high": 8},
        "learning_rate": {"low": 0.02, "high": 0.3, "log": True},
        "subsample": {"low": 0.6, "high": 1.0},
    },
    "lightgbm": {
        "n_estimators": {"low": 50, "high": 300, "step": 25},
        "num_leaves": {"low": 8, "high": 64},
        "learning_rate": {"low": 0.02, "high": 0.3, "log": True},
        "min_child_samples": {"low": 5, "high": 40},
    },
}

_LINEAR_SPACES: dict[Task, Space] = {
    "classification": {"C": {"low": 1e-3, "high": 100.0, "log": True}},
    "regression": {"alpha": {"low": 1e-4, "high": 100.0, "log": True}},
}


def search_space(candidate: CandidateSpec, task: Task) -> Space:
    """The candidate's default space for `task`, overridden by the spec's parameters."""
    defaults = _LINEAR_SPACES[task] if candidate.name == "linear" else _DEFAULT_SPACES[candidate.name]
    space = dict(defaults)
    if candidate.name == "linear":
        # C belongs to the classifier and alpha to the regressor: keep only what fits the task.
        allowed = {"C", "max_iter"} if task == "classification" else {"alpha", "max_iter"}
        space.update({k: v for k, v in candidate.params.items() if k in allowed})
    else:
        space.update(candidate.params)
    return space


def is_fixed(space: Space) -> bool:
    """True when no parameter in the space varies (one trial is enough)."""
    return not any(isinstance(v, dict | list) for v in space.values())


SMALL_FIT_CELLS = 2_000_000
"""Below this many training cells (rows × columns) a boosting model fits on one thread: its
OpenMP barriers cost more than the work they split. Measured on the 2-core CI machine, quiet,
default parameters, 1 vs 2 threads: LightGBM 0.30 vs 1.43 s and XGBoost 0.51 vs 0.94 s at
5,000 × 20; 1.68 vs 1.91 s and 2.03 vs 1.90 s at 100,000 × 20 (break-even); digits (1,400 × 64,
10 classes) 0.64 vs 8.5 s and 0.35 vs 2.1 s. Cross-validation fits many small models."""


def threads_for(name: str, shape: tuple[int, ...], jobs: int | None) -> int | None:
    """The threads candidate `name` fits a `shape` training array with (None: `available_cores()`)."""
    if name in {"xgboost", "lightgbm"} and len(shape) == 2 and shape[0] * shape[1] < SMALL_FIT_CELLS:
        return 1
    return jobs


def serve_on_one_thread(estimator: Any) -> None:
    """Set a fitted model that predicts on several threads to one: it answers a row faster."""
    if "n_jobs" in estimator.get_params():
        estimator.set_params(n_jobs=1)


def make_estimator(
    name: str, task: Task, params: dict[str, Any], *, seed: int, jobs: int | None = None
) -> Any:
    """A fresh, unfitted estimator for candidate `name` with `params`.

    Models that train on several threads get `jobs` of them (default: `available_cores()`)
    unless the spec's parameters set `n_jobs` themselves.
    """
    threads = jobs or available_cores()
    classify = task == "classification"
    if name == "baseline":
        return OneRuleClassifier() if classify else OneRuleRegressor()
    if name == "linear":
        if classify:
            return LogisticRegression(max_iter=params.pop("max_iter", 2000), random_state=seed, **params)
        return Ridge(random_state=seed, **params)
    if name == "decision_tree":
        cls = DecisionTreeClassifier if classify else DecisionTreeRegressor
        return cls(random_state=seed, **params)
    if name == "random_forest":
        params.setdefault("n_jobs", threads)
        cls_rf = RandomForestClassifier if classify else RandomForestRegressor
        return cls_rf(random_state=seed, **params)
    if name == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor  # imported only when a spec uses it

        params.setdefault("n_jobs", threads)
        if classify:
            return XGBClassifier(random_state=seed, tree_method="hist", **params)
        return XGBRegressor(random_state=seed, tree_method="hist", **params)
    if name == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor  # imported only when a spec uses it

        params.setdefault("n_jobs", threads)
        cls_lgbm = LGBMClassifier if classify else LGBMRegressor
        return cls_lgbm(random_state=seed, verbose=-1, deterministic=True, force_row_wise=True, **params)
    raise ValueError(f"unknown candidate {name!r}")  # the spec refuses unknown names first


def default_trial(candidate: CandidateSpec, task: Task, space: Space) -> tuple[dict[str, Any], set[str]]:
    """The library's own defaults for the varying parameters of `space`, as a first trial.

    Returns the values to enqueue (defaults that lie inside the space) and the parameters to
    leave to the library (its default is `None`, e.g. a forest's unlimited depth, or it is
    unset, as in XGBoost, and the spec did not narrow that parameter). Any other varying
    parameter (a default outside the spec's range) is sampled as in every trial.
    """
    defaults = make_estimator(candidate.name, task, {}, seed=0, jobs=1).get_params()
    fixed: dict[str, Any] = {}
    unset: set[str] = set()
    for key, value in space.items():
        if not isinstance(value, dict | list) or key not in defaults:
            continue
        default = defaults[key]
        if default is None:
            if key not in candidate.params:
                unset.add(key)
        elif _contains(value, default):
            fixed[key] = default
    return fixed, unset


def _contains(domain: dict[str, Any] | list[Any], value: Any) -> bool:
    """True when a search range or choice list holds `value`."""
    if isinstance(domain, list):
        return value in domain
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    low, high = domain["low"], domain["high"]
    if not low <= value <= high:
        return False
    if isinstance(low, int) and isinstance(high, int):
        step = 1 if domain.get("log") else int(domain.get("step", 1))
        return float(value).is_integer() and (int(value) - low) % step == 0
    return True
