"""Training on Dask (`dask=`): every candidate's study is a task on a real local cluster (worker
processes), and the leaderboard is the one a run in this process computes, number for number."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

import layerops
from layerops.errors import TrainingError
from layerops.spec import CandidateSpec, TuningSpec
from layerops.training.distributed import DaskRunner, SchedulerUnreachableError, is_address, on_dask
from layerops.training.fitting import FitPlan, InProcess
from layerops.training.reporting import SilentReporter
from layerops.training.selection import CandidateOutcome

SPEC: dict[str, Any] = {
    "name": "iris_dask",
    "target": "species",
    "task": "classification",
    "candidates": [
        {"name": "linear"},
        {"name": "decision_tree", "trials": 12},  # past Optuna's 10 random start-up trials: TPE proper
        {"name": "baseline"},
    ],
    "tuning": {"trials": 2, "cv_repeats": 1},
}
"""Scored by 5-fold CV (iris has fewer than 2,000 rows); `iris_plan` scores on a validation split."""


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes of one thread each, as `local:2` starts on a 2-core machine."""
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as connected,  # type: ignore[no-untyped-call]
    ):
        yield connected


class Recorder(SilentReporter):
    """Keeps every candidate's progress events in the order they came."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[str, int]]] = {}

    def candidate_start(self, name: str, trials: int) -> None:
        self.events.setdefault(name, []).append(("start", trials))

    def trial(self, name: str, number: int, value: float) -> None:
        self.events.setdefault(name, []).append(("trial", number))

    def candidate_end(self, name: str, metrics: dict[str, float]) -> None:
        self.events.setdefault(name, []).append(("end", len(metrics)))


def same_outputs(a: tuple[np.ndarray, np.ndarray | None], b: tuple[np.ndarray, np.ndarray | None]) -> bool:
    """Predictions and probabilities equal bit for bit."""
    if a[1] is None or b[1] is None:
        return a[1] is None and b[1] is None and np.array_equal(a[0], b[0])
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def assert_same_leaderboard(local: list[CandidateOutcome], remote: list[CandidateOutcome]) -> None:
    assert [o.name for o in remote] == [o.name for o in local]
    for a, b in zip(local, remote, strict=True):
        assert b.params == a.params, a.name
        assert b.trials == a.trials, a.name  # every trial's parameters and score, in order
        assert b.validation == a.validation and b.validation_std == a.validation_std, a.name
        assert b.test == a.test, a.name
        assert same_outputs(b.val_outputs, a.val_outputs) and same_outputs(b.test_outputs, a.test_outputs)
        assert b.tie_break == a.tie_break, a.name
        assert b.latency.keys() == a.latency.keys()  # timed here, after the fits


@pytest.mark.slow
def test_the_leaderboard_on_dask_is_the_in_process_one(client: Client, iris_frame: pd.DataFrame) -> None:
    """Two worker processes of one thread (models on 2 threads in one process): the same numbers."""
    local_events, remote_events = Recorder(), Recorder()
    local = layerops.train(SPEC, data=iris_frame, register=False, reporter=local_events)
    # By address, as `--dask tcp://...` connects to a running scheduler (its own client, closed after).
    address = client.scheduler.address  # type: ignore[union-attr]
    remote = layerops.train(SPEC, data=iris_frame, register=False, reporter=remote_events, dask=address)
    assert local.details is not None and remote.details is not None
    assert_same_leaderboard(local.details.leaderboard, remote.details.leaderboard)
    assert remote.winner == local.winner
    assert remote.bundle.metadata.params == local.bundle.metadata.params
    assert remote.bundle.metadata.metrics == local.bundle.metadata.metrics
    # The progress a reporter sees: each candidate starts once, its trials count up, it ends once.
    assert remote_events.events == local_events.events
    tree = remote_events.events["decision_tree"]
    assert tree[:2] == [("start", 12), ("trial", 1)] and tree[-2] == ("trial", 12) and tree[-1][0] == "end"


def held(client: Client) -> bool:
    """True while any worker holds a task's result or scattered data."""
    return any(client.has_what().values())  # type: ignore[no-untyped-call]


def iris_plan() -> FitPlan:
    """Scaled iris, 100 rows to fit, 25 to validate, 25 to test, scored by macro F1."""
    x, y = load_iris(return_X_y=True, as_frame=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x.iloc[order], y.to_numpy()[order]
    scaler = StandardScaler().fit(x.iloc[:100])
    arrays = (scaler.transform(x.iloc[:100]), y[:100], scaler.transform(x.iloc[100:125]), y[100:125])
    tuning = TuningSpec(trials=3)
    return FitPlan(
        "classification", "f1_macro", 0, tuning, 0, scaler, arrays, x.iloc[100:125], x.iloc[125:], y[125:]
    )


@pytest.mark.slow
def test_a_task_that_fails_on_a_worker_is_a_training_error_naming_its_candidate(client: Client) -> None:
    plan = iris_plan()
    candidates = [CandidateSpec(name="decision_tree"), CandidateSpec(name="linear")]
    # Test rows without a column the preprocessing needs: both tasks raise a ValueError, the first
    # one to end is reported.
    broken = dataclasses.replace(plan, x_test=plan.x_test.iloc[:, 1:])
    with pytest.raises(ValueError, match="feature names"):  # in one process, the bare error
        InProcess(1).fit_all(broken, candidates[:1], SilentReporter())
    failed = (
        r"^candidate (decision_tree|linear) failed on a Dask worker: ValueError: The feature names should"
    )
    with pytest.raises(TrainingError, match=failed):
        DaskRunner(client).fit_all(broken, candidates, SilentReporter())
    # A TrainingError from the task (it names its candidate already) is raised as it is.
    missing = dataclasses.replace(plan, arrays=(np.full_like(plan.arrays[0], np.nan), *plan.arrays[1:]))
    with pytest.raises(TrainingError, match=r"^candidate linear: Input X contains NaN"):
        DaskRunner(client).fit_all(missing, candidates[1:], SilentReporter())
    deadline = time.monotonic() + 10  # the other task and the scattered rows were released
    while held(client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not held(client)
    remote = DaskRunner(client).fit_all(plan, candidates, SilentReporter())  # the cluster still works
    local = InProcess(2).fit_all(plan, candidates, SilentReporter())
    assert_same_leaderboard(local, remote)  # on a validation split too


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("local:1", True),
        ("local:16", True),
        ("tcp://scheduler:8786", True),
        ("tls://10.0.0.5:8786", True),
        ("tcp://[::1]:8786", True),
        ("local:0", False),
        ("local:x", False),
        ("local:", False),
        ("local", False),
        ("tcp://scheduler", False),
        ("scheduler:8786", False),
        ("http://scheduler:8786", False),
        ("", False),
    ],
)
def test_which_addresses_name_a_cluster(value: str, allowed: bool) -> None:
    assert is_address(value) is allowed


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_scheduler_that_is_not_running_fails_at_once() -> None:
    address = f"tcp://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    unreachable = pytest.raises(SchedulerUnreachableError, match=f"no Dask scheduler answered at {address}")
    with unreachable, on_dask(address):
        pytest.fail("connected to nothing")
    assert time.monotonic() - start < 2.0
    with pytest.raises(TrainingError, match=r"dask='local:0': use local:N \(N >= 1"), on_dask("local:0"):
        pytest.fail("started a cluster of no workers")
