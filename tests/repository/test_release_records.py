"""Release records in a real sqlite MLflow registry: alias changes with details and `forced`,
alias removal, release events and release state tags, read back by MLflow and the sqlite reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from layerops.errors import NotFoundError
from layerops.repository import ModelRepository, RegistryReader, TrainingRun
from layerops.repository._history import MAX_VALUE_CHARS, decode
from layerops.repository._registry_tables import RegistryTables, open_tables, sqlite_file
from layerops.repository.mlflow_repo import MlflowRepository


@pytest.fixture
def registered(repo: MlflowRepository, training_run: TrainingRun, bundle_dir: Path) -> MlflowRepository:
    """The repository with iris versions 1, 2 and 3."""
    info = repo.log_training(training_run, bundle_dir)
    for _ in range(3):
        repo.register("iris", info)
    return repo


def _tables(tracking_uri: str) -> RegistryTables:
    path = sqlite_file(tracking_uri)
    assert path is not None
    tables = open_tables(path)
    assert tables is not None, "the sqlite reader does not know this MLflow schema"
    return tables


def _history_values(tracking_uri: str) -> list[str]:
    tags = MlflowClient(tracking_uri).get_registered_model("iris").tags
    return [value for key, value in sorted(tags.items()) if key.startswith("layerops.alias_history.")]


def test_both_sides_satisfy_their_protocols(registered: MlflowRepository, tracking_uri: str) -> None:
    assert isinstance(registered, ModelRepository)
    assert isinstance(registered, RegistryReader)
    assert isinstance(_tables(tracking_uri), RegistryReader)


def test_an_alias_change_keeps_its_details_and_forced_flag(
    registered: MlflowRepository, tracking_uri: str
) -> None:
    report = {"metric": "f1_macro", "difference": np.float64(0.031), "ci": (0.01, 0.05), "nan": float("nan")}
    registered.set_alias("iris", "production", 1, reason="first")
    change = registered.set_alias(
        "iris", "production", 2, reason="gate refused, shipping anyway", details=report, forced=True
    )
    assert (change.forced, change.previous, change.version) == (True, 1, 2)

    for reader in (registered, MlflowRepository(tracking_uri), _tables(tracking_uri)):
        first, second = reader.history("iris")
        assert (first.forced, first.details) == (False, {})
        assert second.forced and second.reason == "gate refused, shipping anyway"
        assert second.details == {"metric": "f1_macro", "difference": 0.031, "ci": [0.01, 0.05], "nan": None}


def test_details_too_large_for_a_tag_are_cut_and_marked_not_refused(
    registered: MlflowRepository, tracking_uri: str
) -> None:
    details = {"verdict": "pass", "rows": 20000, "per_row": list(range(3000)), "notes": "x" * 4000}
    change = registered.set_alias("iris", "production", 1, reason="r" * 5000, details=details)

    assert registered.resolve_alias("iris", "production").version == 1
    (value,) = _history_values(tracking_uri)
    assert len(value) <= MAX_VALUE_CHARS
    (recorded,) = registered.history("iris")
    assert recorded.details == {"verdict": "pass", "rows": 20000, "truncated": True}
    assert len(recorded.reason) == 1000
    assert change.details == details  # the caller's object is what it passed


def test_entries_written_before_details_existed_still_decode() -> None:
    old = {"alias": "production", "version": 2, "previous": 1, "at": "2024-05-01T10:00:00+00:00"}
    (change,) = decode("iris", {"layerops.alias_history.000001.abcdef": json.dumps({**old, "reason": "x"})})
    assert (change.version, change.forced, change.details, change.rollback) == (2, False, {}, False)


def test_remove_alias_is_recorded_and_rollback_puts_it_back(
    registered: MlflowRepository, tracking_uri: str
) -> None:
    registered.set_alias("iris", "candidate", 3, reason="canary")
    removed = registered.remove_alias(
        "iris", "candidate", reason="canary failed", details={"error_rate": 0.3}
    )

    assert (removed.version, removed.previous, removed.details) == (None, 3, {"error_rate": 0.3})
    with pytest.raises(NotFoundError, match="no alias 'candidate'"):
        registered.resolve_alias("iris", "candidate")
    with pytest.raises(NotFoundError, match="no alias 'candidate'"):
        registered.remove_alias("iris", "candidate")
    last = _tables(tracking_uri).history("iris")[-1]
    assert (last.alias, last.previous, last.version, last.rollback) == ("candidate", 3, None, False)

    back = registered.rollback("iris", "candidate")
    assert (back.previous, back.version, back.rollback) == (None, 3, True)
    assert registered.resolve_alias("iris", "candidate").version == 3


def test_release_events_are_kept_in_order_and_read_by_both_readers(
    registered: MlflowRepository, tracking_uri: str
) -> None:
    assert registered.events("iris") == []
    registered.record_event("iris", "retrain_trained", "trained version 3", {"version": 3})
    big = {"report": "y" * 6000, "passed": False}
    event = registered.record_event("iris", "gate_failed", "version 3 refused", big)
    registered.record_event("iris", "canary_step", "25%")

    assert event.kind == "gate_failed" and event.details is not big
    for reader in (registered, _tables(tracking_uri)):
        events = reader.events("iris")
        assert [e.kind for e in events] == ["retrain_trained", "gate_failed", "canary_step"]
        assert events[0].details == {"version": 3} and events[0].message == "trained version 3"
        assert events[1].details == {"passed": False, "truncated": True}
        assert events[0].at <= events[1].at <= events[2].at
    assert registered.history("iris") == []  # events are not alias changes
    with pytest.raises(ValueError, match="short word"):
        registered.record_event("iris", "Gate Failed!", "x")
    for call in (lambda: registered.record_event("nope", "x", "y"), lambda: registered.events("nope")):
        with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
            call()
    with pytest.raises(NotFoundError):
        _tables(tracking_uri).events("nope")


def test_release_state_tags(registered: MlflowRepository) -> None:
    key = "layerops.release.canary"
    assert registered.model_tag("iris", key) is None
    registered.set_model_tag("iris", key, '{"step": 1}')
    registered.set_model_tag("iris", key, '{"step": 2}')
    assert registered.model_tag("iris", key) == '{"step": 2}'
    registered.delete_model_tag("iris", key)
    registered.delete_model_tag("iris", key)  # already gone: nothing happens
    assert registered.model_tag("iris", key) is None

    for bad in ("layerops.alias_history.000009.aaaaaa", "owner", "layerops.release."):
        with pytest.raises(ValueError, match=r"must start with 'layerops\.release\.'"):
            registered.set_model_tag("iris", bad, "x")
        with pytest.raises(ValueError):
            registered.model_tag("iris", bad)
    with pytest.raises(NotFoundError):
        registered.model_tag("nope", key)
    with pytest.raises(NotFoundError):
        registered.set_model_tag("nope", key, "x")
    with pytest.raises(NotFoundError):
        registered.delete_model_tag("nope", key)
