"""`layerops.retrain`: the retraining loop on a real embedded repository and a real prediction log.

Each test trains shipping v1 (production) in its own home, logs rows through the monitoring
layer's store (no server), and retrains: no drift trains nothing; drift trains a `candidate` whose
tags say why and on what; the log's labelled rows train a version that `promote` takes to
production; a refusing gate moves nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import layerops
from layerops.api._retrain_data import labelled_rows
from layerops.api.retrain import DATA_TAG, TRIGGER_TAG
from layerops.datasets import shipping
from layerops.errors import DataError, LayeropsError, NotFoundError, SpecError
from layerops.releases.gate import GatePolicy
from layerops.repository.api import ReleaseEvent
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from tests.retraining import give_feedback, log_predictions, registered_home, shifted


def _events(home: Path) -> list[ReleaseEvent]:
    return open_repository(Settings(home=home)).events("shipping")


def _aliases(home: Path) -> dict[str, int]:
    return layerops.models.summaries(home=home)[0].aliases


@pytest.mark.slow
def test_no_drift_trains_nothing_and_records_why(tmp_path: Path) -> None:
    home = registered_home(tmp_path)
    log_predictions(home, shipping(500, seed=21))

    result = layerops.retrain("shipping", tmp_path / "spec.yaml", if_drift=True, home=home)

    assert (result.status, result.version, result.report, result.moved) == ("no_drift", None, None, False)
    assert result.drift is not None and not result.drift.drifted and result.drift.rows == 500
    assert [v.version for v in layerops.models.versions("shipping", home=home)] == [1]
    events = _events(home)
    assert [e.kind for e in events] == ["retrain_skipped"]
    assert "no drift in v1 (500 rows" in events[0].message
    assert events[0].details["drifted"] == [] and "weight" in events[0].details["tests"]


@pytest.mark.slow
def test_drift_trains_a_candidate_whose_tags_say_why_and_on_what(tmp_path: Path) -> None:
    home = registered_home(tmp_path)
    log_predictions(home, shifted(shipping(500, seed=22)))

    result = layerops.retrain("shipping", tmp_path / "spec.yaml", if_drift=True, since="1d", home=home)

    assert (result.status, result.version) == ("candidate", 2)
    assert result.report is not None and result.report.passed
    assert result.drift is not None and set(result.drift.drifted_features()) == {"weight", "service_level"}
    assert result.trigger.startswith("drift: ")
    assert set(result.trigger.removeprefix("drift: ").split(", ")) >= {"weight", "service_level"}
    assert _aliases(home) == {"production": 1, "candidate": 2}  # production untouched: the canary's job
    version = layerops.models.show("shipping", version=2, home=home)
    assert version.tags[TRIGGER_TAG] == result.trigger
    assert version.tags[DATA_TAG] == str((tmp_path / "shipping.csv").resolve()) == result.source
    first, second = (layerops.models.details("shipping", version=v, home=home) for v in (1, 2))
    assert second.lineage["data sha256"] == first.lineage["data sha256"]  # the spec's own file
    events = _events(home)
    assert [e.kind for e in events] == ["retrain_started", "retrain_trained"]
    assert events[1].details == {"trigger": result.trigger, "data": result.source, "version": 2}


@pytest.mark.slow
def test_the_logs_labelled_rows_train_a_version_promote_takes_to_production(tmp_path: Path) -> None:
    home = registered_home(tmp_path)
    fresh = shipping(300, seed=5)
    ids = log_predictions(home, fresh)
    assert give_feedback(home, ids[:200], fresh["cost"][:200]) == 200  # 100 rows never get a label

    result = layerops.retrain("shipping", tmp_path / "spec.yaml", from_log=True, promote=True, home=home)

    assert result.report is not None
    assert (result.status, result.version, result.trigger) == ("production", 2, "manual"), (
        result.report.lines()
    )
    assert result.source.startswith("prediction log of shipping since ")
    assert result.source.endswith("(200 labelled of 300 logged rows)")
    assert result.change is not None and (result.change.previous, result.change.version) == (1, 2)
    assert _aliases(home) == {"production": 2}
    version = layerops.models.details("shipping", version=2, home=home)
    assert version.version.tags[DATA_TAG] == result.source
    assert version.lineage["data"].startswith("in-memory DataFrame")
    assert result.report is not None and result.report.source == "held-out test rows of v2"
    assert result.report.rows == 40  # the 20% test split of the 200 labelled rows


@pytest.mark.slow
def test_a_refusing_gate_moves_nothing_and_a_data_file_replaces_the_spec_source(tmp_path: Path) -> None:
    home = registered_home(tmp_path)
    newer = tmp_path / "newer.parquet"
    shipping(800, seed=9).to_parquet(newer)

    result = layerops.retrain(
        "shipping", tmp_path / "spec.yaml", data=newer, policy=GatePolicy(margin=1.0), home=home
    )

    assert (result.status, result.version, result.change, result.moved) == ("gate_failed", 2, None, False)
    assert result.report is not None and not result.report.passed
    assert _aliases(home) == {"production": 1}
    details = layerops.models.details("shipping", version=2, home=home)
    assert details.lineage["data"] == str(newer.resolve()) == details.version.tags[DATA_TAG]
    assert [e.kind for e in _events(home)] == ["retrain_started", "retrain_trained", "gate_failed"]


@pytest.mark.slow
def test_what_cannot_run_is_one_line_and_trains_nothing(tmp_path: Path) -> None:
    home = registered_home(tmp_path)
    spec = tmp_path / "spec.yaml"
    with pytest.raises(NotFoundError, match="no logged predictions of model 'shipping'"):
        layerops.retrain("shipping", spec, if_drift=True, home=home)
    fresh = shipping(80, seed=3)
    ids = log_predictions(home, fresh)
    with pytest.raises(DataError, match=r"only 80 logged rows of shipping v1 .* at least 100"):
        layerops.retrain("shipping", spec, if_drift=True, home=home)
    give_feedback(home, ids[:30], fresh["cost"][:30])
    with pytest.raises(DataError, match=r"only 30 of 80 logged rows of shipping .* at least 50") as info:
        layerops.retrain("shipping", spec, from_log=True, home=home)
    assert "\n" not in str(info.value)
    with pytest.raises(NotFoundError, match="ghost"):
        layerops.retrain("ghost", {**_spec_dict(), "name": "ghost"}, home=home)
    with pytest.raises(LayeropsError, match="cost"):  # no target column: training refuses
        layerops.retrain("shipping", spec, data=fresh.drop(columns="cost"), home=home)
    assert [v.version for v in layerops.models.versions("shipping", home=home)] == [1]
    assert [e.kind for e in _events(home)] == ["retrain_started", "retrain_failed"]


def _spec_dict() -> dict[str, object]:
    return {"name": "shipping", "target": "cost", "candidates": [{"name": "linear"}]}


def test_a_spec_of_another_model_or_two_sources_are_refused_before_anything_runs(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    with pytest.raises(SpecError, match="the spec trains model 'shipping', not 'iris'"):
        layerops.retrain("iris", _spec_dict(), home=home)
    with pytest.raises(LayeropsError, match="data or from_log, not both"):
        layerops.retrain("shipping", _spec_dict(), data=tmp_path / "x.csv", from_log=True, home=home)
    assert not home.exists()


def test_labelled_rows_keep_labelled_inputs_with_the_latest_label() -> None:
    log = pd.DataFrame(
        {
            "request_id": ["a", "a", "b", "c"],
            "row": np.array([0, 1, 0, 0], dtype="int32"),
            "prediction": [1.0, 2.0, 3.0, 4.0],
            "input.weight": [1.5, 2.5, None, 4.5],
            "input.origin": ["north", None, "south", "east"],
        }
    )
    feedback = pd.DataFrame(
        {
            "request_id": ["a", "b", "a", "zzz"],
            "row": np.array([1, 0, 1, 0], dtype="int32"),
            "label": [10.0, 30.0, 20.0, 99.0],
            "time": pd.to_datetime(["2026-01-01", "2026-01-01", "2026-01-02", "2026-01-01"], utc=True),
        }
    )
    frame = labelled_rows(log, feedback, "cost")
    assert frame.columns.tolist() == ["weight", "origin", "cost"]
    assert frame.astype(object).where(frame.notna(), None).values.tolist() == [
        [2.5, None, 20.0],  # a/1: the later label wins
        [None, "south", 30.0],
    ]
    assert labelled_rows(log, None, "cost").columns.tolist() == ["weight", "origin", "cost"]
    assert labelled_rows(log, None, "cost").empty
