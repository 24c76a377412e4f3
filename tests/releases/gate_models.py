"""Tiny registered models for the promotion gate's tests: a bad one, a good one, and two that differ
only in their random seed (the gate must not mistake that noise for an improvement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import layerops

NAME = "synth"
TARGET = "label"
VERSIONS = {"baseline": 1, "linear": 2, "forest_seed_1": 3, "forest_seed_2": 4}
"""Which model each version is, in the order `train_gate_models` registers them."""


def synthetic_frame(rows: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Labels `yes`/`no` from a noisy linear score of 8 features: a linear model is far better
    than one rule on one feature, and a small forest is close to the linear model."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8))
    score = x @ np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0]) + rng.normal(scale=0.8, size=rows)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    frame[TARGET] = np.where(score > 0, "yes", "no")
    return frame


def spec(candidate: dict[str, Any], seed: int = 1) -> dict[str, Any]:
    """One fixed candidate, no tuning: fast and deterministic."""
    return {
        "name": NAME,
        "target": TARGET,
        "seed": seed,
        "cleaning": {"collinearity_threshold": None},
        "candidates": [candidate],
        "tuning": {"trials": 1, "cv_folds": 0},
    }


def train_gate_models(home: Path) -> pd.DataFrame:
    """Register `VERSIONS` in `home` (no alias set); return the training frame."""
    frame = synthetic_frame()
    forest = {"name": "random_forest", "params": {"n_estimators": 20, "max_depth": 5, "min_samples_leaf": 2}}
    for candidate, seed in [({"name": "baseline"}, 1), ({"name": "linear"}, 1), (forest, 1), (forest, 2)]:
        result = layerops.train(spec(candidate, seed), data=frame, home=home, jobs=1)
        assert result.registered is not None
    return frame
