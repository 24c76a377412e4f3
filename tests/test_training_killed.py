"""A training killed midway leaves no partial version: every registered version loads whole.

Two ways to kill it. `layerops train` itself, SIGKILLed while its candidates train. And, where a
kill could actually tear something (logging the runs, uploading the bundle, registering), a
driver process that imports layerops once, then forks one child per kill point; each child runs
`train()` and signals itself at a chosen MLflow client call. Afterwards the repository must hold
only versions whose bundle downloads and matches the digest the registry pinned.

The home is pre-migrated (a copy of one migrated database) so a kill never lands in MLflow's
first-time schema migration, which is not what these tests are about.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layerops.errors import NotFoundError
from layerops.repository.api import ModelRepository
from layerops.repository.factory import open_repository
from layerops.settings import Settings

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120.0
"""Bound on reaching the kill point (imports alone take 10-30 s on a busy two-core machine)."""
EXIT_TIMEOUT_S = 30.0

SLOW_SPEC = """
name: {name}
data: {{path: data.csv}}
target: label
cleaning: {{collinearity_threshold: null}}
candidates:
  - name: random_forest
    params: {{n_estimators: {{low: 300, high: 500, step: 100}}}}
tuning: {{trials: 30}}
"""
"""Tens of seconds of forest fitting: still under way a second after the candidates start."""

FAST_SPEC = """
name: {name}
data: {{path: data.csv}}
target: label
cleaning: {{collinearity_threshold: null}}
candidates:
  - name: baseline
tuning: {{trials: 1}}
"""


def _settings(home: Path) -> Settings:
    """The embedded repository in `home`, whatever LAYEROPS_* variables the environment sets."""
    return Settings(home=home, tracking_uri=None, registry_uri=None, artifact_root=None)


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAYEROPS_")}
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded repository database with MLflow's schema already in place."""
    home = tmp_path_factory.mktemp("template-home")
    open_repository(_settings(home)).list_models()
    return home / "mlflow.db"


@pytest.fixture
def workspace(tmp_path: Path, migrated_database: Path) -> Path:
    """tmp_path with data.csv (a noisy two-class problem) and a pre-migrated home/."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, 8))
    signal_ = features[:, 0] + features[:, 1] * features[:, 2] + rng.normal(scale=0.7, size=3000)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(8)])
    frame["label"] = np.where(signal_ > 0, "yes", "no")
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "home").mkdir()
    shutil.copyfile(migrated_database, tmp_path / "home" / "mlflow.db")
    return tmp_path


def _write_spec(workspace: Path, template: str, name: str) -> Path:
    spec = workspace / f"{name}.yaml"
    spec.write_text(template.format(name=name), encoding="utf-8")
    return spec


def assert_only_complete_versions(repository: ModelRepository, name: str) -> list[int]:
    """Every version of `name` downloads and verifies against its pinned digest; their numbers."""
    try:
        versions = repository.list_versions(name)
    except NotFoundError:
        return []
    for version in versions:
        bundle = repository.load_bundle(name, version.version)  # raises on a missing/changed file
        assert bundle.metadata.name == name
        assert bundle.model is not None
    return sorted(version.version for version in versions)


class _Lines:
    """A child process's merged output, readable line by line with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self._thread.start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, deadline: float) -> None:
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in time; output so far:\n{''.join(self.seen)}") from None
            if line is None:
                raise AssertionError(f"exited before {text!r}; output:\n{''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return


def test_layerops_train_killed_while_candidates_train_registers_nothing(workspace: Path) -> None:
    spec = _write_spec(workspace, SLOW_SPEC, "slow")
    command = [sys.executable, "-m", "layerops.cli.main", "--home", "home", "train", str(spec)]
    process = subprocess.Popen(
        command,
        cwd=workspace,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _Lines(process)
        lines.wait_for("ranking by ", time.monotonic() + STARTUP_TIMEOUT_S)
        time.sleep(1.5)  # inside the forest's tuning trials
        assert process.poll() is None, "training finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=EXIT_TIMEOUT_S) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    repository = open_repository(_settings(workspace / "home"))
    assert assert_only_complete_versions(repository, "slow") == []
    assert "slow" not in {summary.name for summary in repository.list_models()}


_DRIVER = r"""
import json, os, shutil, sys, time
from pathlib import Path

start = time.monotonic()

from mlflow import MlflowClient

from layerops.repository.factory import open_repository
from layerops.settings import Settings
from layerops.spec import load_spec
from layerops.training.pipeline import train

home, spec_file, plan = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
spec = load_spec(spec_file)
print(f"{time.monotonic() - start:5.1f}s imported", file=sys.stderr)


def settings(folder):
    return Settings(home=folder, tracking_uri=None, registry_uri=None, artifact_root=None)


# One whole run in a scratch home first, so that every import (training, ONNX, skops, MLflow's
# stores) happens once, before the forks; the children never touch the scratch database.
scratch = home.parent / "scratch-home"
scratch.mkdir()
shutil.copyfile(home / "mlflow.db", scratch / "mlflow.db")
train(spec, open_repository(settings(scratch)))
print(f"{time.monotonic() - start:5.1f}s warmed up", file=sys.stderr)
target, calls = None, {}


def wrap(name, method):
    def wrapper(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        hit = target is not None and (target[0], target[1]) == (name, calls[name])
        if hit and target[2] == "before":
            os.kill(os.getpid(), target[3])
        result = method(*args, **kwargs)
        if hit and target[2] == "after":
            os.kill(os.getpid(), target[3])
        return result
    return wrapper


for name, method in list(vars(MlflowClient).items()):
    if callable(method) and not name.startswith("_"):
        setattr(MlflowClient, name, wrap(name, method))

outcomes = []
for point in plan:
    pid = os.fork()
    if pid == 0:  # the child: one training, killed at `point`
        code = 0
        try:
            repository = open_repository(settings(home))
            target, calls = point, {}
            train(spec, repository)
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    outcomes.append(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status))
    print(f"{time.monotonic() - start:5.1f}s {point} -> {outcomes[-1]}", file=sys.stderr)
print(json.dumps(outcomes))
"""
"""Runs each plan point [client method, nth call, before|after, signal] in a forked child; prints,
per point, the signal that ended the child, or minus its exit status (-3: it raised)."""

KILL = int(signal.SIGKILL)
KILL_POINTS: list[tuple[list[object], str, int]] = [
    # (point, what it leaves behind, how the child ends: signal number, or -3 when it raised)
    (["log_artifacts", 1, "after", KILL], "a RUNNING run holding the whole bundle", KILL),
    (["create_model_version", 1, "before", int(signal.SIGTERM)], "a FINISHED run, nothing registered", 15),
    (["create_model_version", 1, "after", KILL], "a complete version, no alias", KILL),
    (["log_artifacts", 1, "after", int(signal.SIGINT)], "KeyboardInterrupt: runs marked FAILED", -3),
]


def test_kills_while_logging_and_registering_leave_only_complete_versions(workspace: Path) -> None:
    spec = _write_spec(workspace, FAST_SPEC, "fast")
    plan = [point for point, _, _ in KILL_POINTS]
    finished = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(workspace / "home"), str(spec), json.dumps(plan)],
        cwd=workspace,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S + 20 * len(plan),
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    outcomes = json.loads(finished.stdout.strip().splitlines()[-1])

    # every child was stopped where planned (a point never reached would have finished: 0)
    assert outcomes == [ending for _, _, ending in KILL_POINTS], finished.stderr[-3000:]
    repository = open_repository(_settings(workspace / "home"))
    assert assert_only_complete_versions(repository, "fast") == [1]  # the one killed after registering
