"""The canary state machine with an injected clock, and its store in a real sqlite repository."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from layerops.bundle import save_bundle
from layerops.errors import RepositoryError
from layerops.releases.analysis import Comparison
from layerops.releases.canary import (
    HISTORY,
    LEASE_TAG,
    MAX_JSON_CHARS,
    STATE_TAG,
    CanaryState,
    ReleaseStore,
    StaleStateError,
    decide,
    start,
    transition,
)
from layerops.releases.policy import CanaryPolicy
from layerops.repository.api import CandidateRun, TrainingRun
from layerops.repository.mlflow_repo import MlflowRepository
from tests.bundle.builders import iris_bundle

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
POLICY = CanaryPolicy(steps=(5, 25, 100), step_seconds=60)
PASS = Comparison(
    "pass", ["the canary matches the baseline"], {"canary_requests": 300, "baseline_error_rate": 0.01}
)
WAIT = Comparison("wait", ["the canary has 12 requests in the window, fewer than the 100 needed"], {})
FAIL = Comparison(
    "fail", ["the canary's error rate is 30.00 %"], {"canary_error_rate": 0.3, "ratio": float("inf")}
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_start_runs_the_first_step() -> None:
    state = start("iris", 1, 2, POLICY, T0)
    assert (state.step, state.share, state.status, state.since, state.revision) == (0, 5, "running", T0, 1)
    assert state.reason == "canary of v2 against v1 started at 5 %"
    assert [entry["action"] for entry in state.history] == ["start"]
    again = start("iris", 2, 3, POLICY, at(999), previous=transition(state, "held", "gate refused", at(500)))
    assert again.revision == 3 and [e["action"] for e in again.history] == ["start", "held", "start"]


def test_a_passing_canary_advances_only_after_each_step_held_long_enough() -> None:
    state = start("iris", 1, 2, POLICY, T0)
    early = decide(state, PASS, POLICY, at(59))
    assert (early.action, early.state) == ("hold", state)
    assert early.reason == "holding step 1 (5 %): 59 of 60 s"

    advanced = decide(state, PASS, POLICY, at(60))
    assert advanced.action == "advance"
    assert (advanced.state.step, advanced.state.share, advanced.state.since) == (1, 25, at(60))
    assert advanced.state.revision == state.revision + 1
    assert advanced.reason == "advanced to step 2 (25 %) after 60 s at step 1 (5 %)"
    assert advanced.state.history[-1]["numbers"] == {"canary_requests": 300, "baseline_error_rate": 0.01}

    assert decide(advanced.state, PASS, POLICY, at(119)).action == "hold"  # the step's clock restarted
    last = decide(advanced.state, PASS, POLICY, at(120)).state
    assert (last.step, last.share, last.status) == (2, 100, "running")

    finished = decide(last, PASS, POLICY, at(180))
    assert finished.action == "finish"
    assert (finished.state.status, finished.state.share, finished.state.revision) == ("promoted", 100, 4)
    assert finished.reason == "passed every step: the canary matches the baseline"
    assert [e["action"] for e in finished.state.history] == ["start", "advance", "advance", "finish"]


def test_a_wait_never_advances() -> None:
    state = start("iris", 1, 2, POLICY, T0)
    decision = decide(state, WAIT, POLICY, at(3600))
    assert (decision.action, decision.state) == ("hold", state)
    assert decision.reason.startswith("waiting at step 1 (5 %): the canary has 12 requests")


@pytest.mark.parametrize("seconds", [1, 3600])
def test_a_failing_comparison_rolls_back_at_once(seconds: float) -> None:
    state = decide(start("iris", 1, 2, POLICY, T0), PASS, POLICY, at(60)).state
    decision = decide(state, FAIL, POLICY, at(60 + seconds))
    assert decision.action == "rollback"
    after = decision.state
    assert (after.status, after.share, after.step, after.since) == ("rolled_back", 0, 1, at(60 + seconds))
    assert (
        after.reason == decision.reason == "rolled back at step 2 (25 %): the canary's error rate is 30.00 %"
    )
    assert after.history[-1]["numbers"] == {"canary_error_rate": 0.3}  # infinity is not JSON: left out


@pytest.mark.parametrize("status", ["rolled_back", "promoted", "held"])
def test_a_canary_that_is_not_running_holds(status: str) -> None:
    state = transition(start("iris", 1, 2, POLICY, T0), status, "by hand", at(5))  # type: ignore[arg-type]
    for comparison in (PASS, FAIL, WAIT):
        decision = decide(state, comparison, POLICY, at(10_000))
        assert (decision.action, decision.state) == ("hold", state)
    assert state.share == (0 if status == "rolled_back" else 5)


def test_the_gate_refusing_holds_the_canary_at_its_last_share() -> None:
    last = replace(start("iris", 1, 2, POLICY, T0), step=2, share=100.0)
    finished = decide(last, PASS, POLICY, at(60)).state
    held = transition(finished, "held", "the promotion gate refused it", at(61))
    assert (held.status, held.share, held.revision) == ("held", 100, finished.revision + 1)
    assert held.history[-1]["action"] == "held"


def test_history_keeps_the_last_20_transitions_and_the_json_round_trips() -> None:
    state = start("iris", 1, 2, POLICY, T0)
    for i in range(30):
        state = transition(state, "running", f"resumed {i}", at(i))
    assert len(state.history) == HISTORY and state.history[-1]["reason"] == "resumed 29"
    text = state.to_json()
    assert len(text) <= MAX_JSON_CHARS
    back = CanaryState.from_json(text)
    assert back.history == state.history[-len(back.history) :]
    assert replace(back, history=state.history) == state
    assert back.since.tzinfo is not None


def test_the_stored_json_fits_a_registry_tag() -> None:
    long = Comparison("fail", ["x" * 6000], {f"number_{i}": i / 7 for i in range(30)})
    state = start("iris", 1, 2, POLICY, T0)
    for i in range(10):
        state = replace(decide(state, long, POLICY, at(i)).state, status="running")
    text = state.to_json()
    assert len(text) <= MAX_JSON_CHARS
    assert CanaryState.from_json(text).reason.endswith("…")


# -- the store, on a real sqlite repository ---------------------------------------------------


@pytest.fixture(scope="module")
def registered_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated MLflow sqlite database with model iris registered (copied for each test)."""
    import pandas as pd
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("releases-registry")
    frame = load_iris(as_frame=True).frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = [["setosa", "versicolor", "virginica"][i] for i in frame.pop("target")]
    save_bundle(iris_bundle(pd.DataFrame(frame)), folder / "bundle")
    repository = MlflowRepository(
        f"sqlite:///{folder / 'mlflow.db'}", artifact_root=str(folder / "artifacts")
    )
    run = TrainingRun(
        pipeline="iris",
        params={"task": "classification"},
        tags={},
        candidates=[CandidateRun(name="logistic_regression", params={}, metrics={"val_accuracy": 0.9})],
        winner="logistic_regression",
    )
    repository.register("iris", repository.log_training(run, folder / "bundle"))
    return folder / "mlflow.db"


class Clock:
    """A settable wall clock (epoch seconds) for the lease."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def repo(registered_db: Path, tmp_path: Path) -> MlflowRepository:
    shutil.copyfile(registered_db, tmp_path / "mlflow.db")
    return MlflowRepository(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(repo: MlflowRepository, clock: Clock) -> ReleaseStore:
    return ReleaseStore(repo, clock=clock)


def test_the_store_saves_loads_and_clears_a_state(store: ReleaseStore, repo: MlflowRepository) -> None:
    assert store.load("iris") is None
    state = start("iris", 1, 2, POLICY, T0)
    store.save(state, expected_revision=None)
    assert store.load("iris") == state
    advanced = decide(state, PASS, POLICY, at(60)).state
    store.save(advanced, expected_revision=state.revision)
    assert store.load("iris") == advanced
    assert ReleaseStore(MlflowRepository(repo.tracking_uri)).load("iris") == advanced  # another process
    store.clear("iris")
    store.clear("iris")
    assert store.load("iris") is None


def test_a_stale_save_is_refused(store: ReleaseStore) -> None:
    state = start("iris", 1, 2, POLICY, T0)
    store.save(state, expected_revision=None)
    with pytest.raises(
        StaleStateError, match=r"^canary state of iris: expected revision None, found revision 1$"
    ):
        store.save(state, expected_revision=None)
    mine = decide(state, PASS, POLICY, at(60)).state  # two deciders start from revision 1
    theirs = decide(state, FAIL, POLICY, at(61)).state
    store.save(theirs, expected_revision=state.revision)
    with pytest.raises(StaleStateError, match="expected revision 1, found revision 2") as caught:
        store.save(mine, expected_revision=state.revision)
    assert isinstance(caught.value, RepositoryError)
    assert store.load("iris") == theirs
    store.clear("iris")
    with pytest.raises(StaleStateError, match="expected revision 2, found no state"):
        store.save(mine, expected_revision=2)


def test_a_corrupt_state_reads_as_none_with_a_warning(
    store: ReleaseStore, repo: MlflowRepository, caplog: pytest.LogCaptureFixture
) -> None:
    for corrupt in ("{not json", json.dumps({"model": "iris"}), "[1, 2]", json.dumps({"status": "odd"})):
        repo.set_model_tag("iris", STATE_TAG, corrupt)
        with caplog.at_level(logging.WARNING, logger="layerops.releases"):
            assert store.load("iris") is None
        assert "the canary state of iris is corrupt" in caplog.text
        caplog.clear()
    store.save(start("iris", 1, 2, POLICY, T0), expected_revision=None)  # a corrupt state counts as none


def test_the_lease_is_exclusive_until_it_expires(
    store: ReleaseStore, repo: MlflowRepository, clock: Clock
) -> None:
    assert store.lease("iris", "a", 10)
    assert json.loads(repo.model_tag("iris", LEASE_TAG) or "") == {"holder": "a", "until": clock.now + 10}
    assert not store.lease("iris", "b", 10)
    clock.now += 9
    assert store.lease("iris", "a", 10)  # a renewal: until moves on
    clock.now += 9
    assert not store.lease("iris", "b", 10)
    clock.now += 1.5
    assert store.lease("iris", "b", 10)  # a's lease expired
    assert not store.lease("iris", "a", 10)
    store.release("iris", "a")  # not a's: nothing happens
    assert not store.lease("iris", "a", 10)
    store.release("iris", "b")
    assert store.lease("iris", "a", 10)
    repo.set_model_tag("iris", LEASE_TAG, "garbage")
    assert store.lease("iris", "b", 10)  # an unreadable lease is free


class RacingRepository(MlflowRepository):
    """A real repository where another writer's value lands right after each write of `key`."""

    rival = ""
    key = ""

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        super().set_model_tag(name, key, value)
        if key == self.key:
            super().set_model_tag(name, key, self.rival)


def test_the_last_writer_wins_and_the_loser_sees_it(repo: MlflowRepository, clock: Clock) -> None:
    racing = RacingRepository(repo.tracking_uri)
    racing.key, racing.rival = LEASE_TAG, json.dumps({"holder": "b", "until": clock.now + 10})
    assert not ReleaseStore(racing, clock=clock).lease("iris", "a", 10)
    assert not ReleaseStore(repo, clock=clock).lease("iris", "a", 10)  # b holds it

    state = start("iris", 1, 2, POLICY, T0)
    racing.key, racing.rival = STATE_TAG, replace(state, reason="theirs").to_json()
    with pytest.raises(StaleStateError, match="another writer saved at the same time"):
        ReleaseStore(racing, clock=clock).save(state, expected_revision=None)
