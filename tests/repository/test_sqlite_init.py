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

from layerops.repository._registry_tables import sqlite_file
from layerops.repository._sqlite_init import initialise_sqlite
from layerops.repository.factory import open_repository
from layerops.settings import Settings


def test_sqlite_file() -> None:
    assert sqlite_file("sqlite:////tmp/x/mlflow.db") == Path("/tmp/x/mlflow.db")
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql://h/db") is None
    assert sqlite_file("sqlite:////tmp/a%20b/mlflow.db?mode=ro") == Path(
        "/tmp/a b/mlflow.db"
    )  # as SQLAlchemy


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


def test_new_stores_are_copies_of_a_template_built_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    built = tmp_path / "built" / "mlflow.db"
    built.parent.mkdir()
    initialise_sqlite(f"sqlite:///{built}")  # builds the template, then copies it
    (template,) = (tmp_path / "cache" / "layerops").iterdir()
    assert template.name.endswith("-empty.db") and [p.name for p in built.parent.iterdir()] == ["mlflow.db"]
    copied = tmp_path / "copied" / "mlflow.db"
    copied.parent.mkdir()
    initialise_sqlite(f"sqlite:///{copied}")
    assert copied.read_bytes() == template.read_bytes()  # a copy, not sixty migrations again
    repository = open_repository(Settings(home=copied.parent, tracking_uri=f"sqlite:///{copied}"))
    assert repository.list_models() == []  # MLflow accepts the schema as current


@pytest.mark.slow
def test_a_first_open_killed_during_the_migrations_leaves_a_usable_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    no_cache = tmp_path / "not-a-folder"  # no template can be cached: the schema is built in place
    no_cache.write_text("")
    env = {**os.environ, "LAYEROPS_LOG_LEVEL": "WARNING", "XDG_CACHE_HOME": str(no_cache)}
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
