"""Shared fixtures: small deterministic data sets and an isolated layerops home."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A fresh database `layerops_test_<random>` on the local server (its URL), dropped afterwards;
    skips (fails in CI) when PostgreSQL or its driver is missing."""
    import importlib.util
    import secrets
    import socket

    import sqlalchemy

    if importlib.util.find_spec("psycopg") is None:
        service_unavailable("PostgreSQL driver psycopg is not installed in this environment")
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError as exc:
        service_unavailable(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc})")
    name = f"layerops_test_{secrets.token_hex(6)}"
    admin = sqlalchemy.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        service_unavailable(f"cannot create a database on PostgreSQL at 127.0.0.1:5432 ({exc.orig})")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
