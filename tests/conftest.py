"""Shared fixtures: small deterministic data sets and an isolated layerops home."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris


@pytest.fixture
def iris_frame() -> pd.DataFrame:
    """Iris as a frame with readable column names and string species labels."""
    data = load_iris(as_frame=True)
    frame = data.frame.rename(
        columns={
            "sepal length (cm)": "sepal_length",
            "sepal width (cm)": "sepal_width",
            "petal length (cm)": "petal_length",
            "petal width (cm)": "petal_width",
        }
    )
    frame["species"] = [str(data.target_names[i]) for i in frame.pop("target")]
    return frame


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    """A small regression frame with numeric and categorical columns and some missing values."""
    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "length": rng.uniform(10, 100, n),
            "weight": rng.uniform(0.5, 30, n),
            "origin": rng.choice(["north", "south", "east"], n),
            "service": rng.choice(["standard", "express"], n),
        }
    )
    frame["cost"] = (
        2.0 + 0.05 * frame["length"] + 0.8 * frame["weight"] + (frame["service"] == "express") * 5.0
    )
    frame.loc[rng.choice(n, 10, replace=False), "length"] = np.nan
    return frame


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty layerops home folder for one test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def service_unavailable(reason: str) -> None:
    """Skip a test whose service is unreachable, except in CI, where every such test must run."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI requires this service: {reason}")
    pytest.skip(reason)
