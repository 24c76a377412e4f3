"""A new sqlite store appears whole or not at all: a process killed while MLflow builds it
(seconds of schema migrations) leaves nothing that a later open cannot use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerops.repository._sqlite_init import initialise_sqlite, sqlite_path
from layerops.repository.factory import open_repository
from layerops.settings import Settings


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite:////tmp/x/mlflow.db") == Path("/tmp/x/mlflow.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://h/db") is None


def test_a_new_database_is_built_aside_and_linked_whole(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    initialise_sqlite(f"sqlite:///{path}")
    assert path.is_file() and path.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]  # no temporary file left
    before = path.stat().st_ino
    initialise_sqlite(f"sqlite:///{path}")  # an existing database is left alone
    assert path.stat().st_ino == before
    repository = open_repository(Settings(home=tmp_path, tracking_uri=f"sqlite:///{path}"))
    assert repository.list_models() == []


@pytest.mark.slow
def test_a_first_open_killed_during_the_migrations_leaves_a_usable_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "LAYEROPS_LOG_LEVEL": "WARNING"}
    # Read commands never create a repository; opening one for writing does (as `train` does).
    opening = (
        "import sys; from layerops.repository.factory import open_repository; "
        "from layerops.settings import Settings; open_repository(Settings(home=sys.argv[1])).list_models()"
    )
    process = subprocess.Popen([sys.executable, "-c", opening, str(home)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(home.glob(".mlflow.db.*.init")):  # the schema is being built aside
            assert process.poll() is None, "the process ended before building the database"
            assert time.monotonic() < deadline, "no database was being built"
            time.sleep(0.05)
        time.sleep(0.5)  # into the migrations
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (home / "mlflow.db").exists() or (home / "mlflow.db").stat().st_size > 0
    repository = open_repository(Settings(home=home))  # the next open builds it (again) and works
    assert repository.list_models() == []
