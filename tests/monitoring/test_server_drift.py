"""The issue's proof: serve a model, send in-distribution then shifted rows, find exactly the drift.

2,000 rows from the training distribution flag nothing; 2,000 with `weight` shifted by half a
standard deviation and `service_level`'s most and least frequent categories swapped flag those two
features and no other, in `layerops drift` (table, JSON, HTML report, exit code 3) and in the
server's `/metrics` gauges.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import layerops
from layerops.datasets import shipping
from layerops.delivery.app import create_app
from layerops.delivery.runtime import ServingRuntime, build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from layerops.spec import parse_spec
from layerops.training.pipeline import train
from tests.test_cli import invoke

pytestmark = pytest.mark.slow

KEY = "monitoring-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
FEATURES = ["length", "width", "height", "weight", "origin", "destination", "service_level"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a shipping regressor (linear, no tuning) promoted to production."""
    home = tmp_path_factory.mktemp("monitored")
    repository = open_repository(Settings(home=home))
    spec = parse_spec(
        {
            "name": "shipping",
            "target": "cost",
            "candidates": [{"name": "linear"}],
            "tuning": {"trials": 1, "cv_folds": 0},
        }
    )
    result = train(spec, repository, data=shipping(4000, seed=1))
    assert result.version is not None
    repository.set_alias("shipping", "production", result.version.version)
    return home


@pytest.fixture(scope="module")
def served(home: Path) -> Iterator[tuple[TestClient, ServingRuntime]]:
    settings = ServeSettings(
        home=home,
        api_keys=[KEY],
        reload_interval_seconds=0,
        drift_interval_seconds=0,  # the test runs the check itself
        drift_window_rows=2000,
    )
    runtime = build_runtime(settings, open_repository(settings))
    with TestClient(create_app(runtime)) as client:
        yield client, runtime


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = frame[FEATURES].astype(object).where(frame[FEATURES].notna(), None)
    return rows.to_dict(orient="records")


def _send(client: TestClient, frame: pd.DataFrame) -> None:
    rows = _rows(frame)
    for start in range(0, len(rows), 200):
        response = client.post("/models/shipping/predict", json=rows[start : start + 200], headers=AUTH)
        assert response.status_code == 200, response.text


def _shifted(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["weight"] = out["weight"] + 0.5 * reference["weight"].std()
    shares = reference["service_level"].value_counts()
    most, least = shares.index[0], shares.index[-1]
    out["service_level"] = out["service_level"].map(
        lambda v: least if v == most else most if v == least else v
    )
    return out


Cli = tuple[pytest.CaptureFixture[str], pytest.MonkeyPatch]


def _drift(cli: Cli, home: Path, tmp_path: Path, html: str) -> tuple[int, dict[str, Any], str]:
    report = tmp_path / html
    code, out, err = invoke(
        *cli, "--home", str(home), "drift", "shipping", "--last", "2000", "--json", "--html", str(report)
    )
    assert code in (0, 3), err
    return code, json.loads(out), report.read_text()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return capsys, monkeypatch


def _flagged(body: dict[str, Any]) -> set[str]:
    return {item["feature"] for item in body["features"] if item["drifted"]}


def test_in_distribution_rows_flag_nothing_and_shifted_rows_flag_exactly_the_shifted_features(
    home: Path, served: tuple[TestClient, ServingRuntime], tmp_path: Path, cli: Cli
) -> None:
    client, runtime = served
    assert runtime.prediction_log is not None and runtime.drift is not None
    training = shipping(4000, seed=1)

    _send(client, shipping(2000, seed=11))
    assert runtime.prediction_log.flush(timeout=20)
    code, body, _ = _drift(cli, home, tmp_path, "calm.html")
    assert (code, _flagged(body)) == (0, set()), body
    assert body["rows"] == 2000 and not body["drifted"]

    _send(client, _shifted(shipping(2000, seed=12), training))
    assert runtime.prediction_log.flush(timeout=20)
    code, body, html = _drift(cli, home, tmp_path, "shifted.html")
    assert code == 3
    assert _flagged(body) == {"weight", "service_level"}, body
    tests = {item["feature"]: item["test"] for item in body["features"]}
    assert tests["weight"] == "ks" and tests["service_level"] == "chi2"
    assert body["features"][0]["feature"] in {"weight", "service_level"}  # drifted first
    # the HTML report exists, is self-contained and names both drifted features
    assert "weight" in html and "service_level" in html and "DRIFT" in html.upper()
    assert not re.search(r"""(src|href)=["']https?://""", html)
    assert html.count("<svg") >= len(FEATURES) + 1

    # the server's own check over its recent rows, exported as gauges
    reports = runtime.drift.check_all()
    assert [r.model for r in reports] == ["shipping"]
    assert set(reports[0].drifted_features()) == {"weight", "service_level"}
    metrics = client.get("/metrics", headers=AUTH).text
    assert 'layerops_drift_detected{model="shipping",version="1"} 1.0' in metrics
    assert re.search(
        r'layerops_feature_drift\{feature="weight",model="shipping",statistic="ks",version="1"\} 0\.\d+',
        metrics,
    ) or re.search(
        r'layerops_feature_drift\{model="shipping",version="1",feature="weight",statistic="ks"\} 0\.\d+',
        metrics,
    )
    assert "layerops_prediction_drift{" in metrics
    assert "layerops_prediction_log_rows_total 4000.0" in metrics


def test_feedback_is_matched_by_request_id_and_reported_per_item(
    home: Path, served: tuple[TestClient, ServingRuntime], tmp_path: Path
) -> None:
    client, runtime = served
    rows = _rows(shipping(3, seed=21))
    response = client.post("/models/shipping/predict", json=rows, headers={**AUTH, "X-Request-ID": "fb-1"})
    assert response.status_code == 200
    single = client.post("/models/shipping/predict", json=rows[0], headers=AUTH)
    single_id = single.headers["x-request-id"]

    ok = client.post("/models/shipping/feedback", json={"request_id": single_id, "label": 12.5}, headers=AUTH)
    assert (ok.status_code, ok.json()) == (200, {"stored": 1, "rejected": []})

    mixed = client.post(
        "/models/shipping/feedback",
        json=[
            {"request_id": "fb-1", "row": 0, "label": 10.0},
            {"request_id": "fb-1", "row": 2, "label": 11},
            {"request_id": "nobody-sent-this", "label": 3.0},
            {"request_id": "fb-1", "label": "heavy"},
            {"request_id": "fb-1", "label": 1.0, "colour": "red"},
        ],
        headers=AUTH,
    )
    assert mixed.status_code == 422
    body = mixed.json()
    assert body["stored"] == 2
    reasons = {item["index"]: item["reason"] for item in body["rejected"]}
    assert set(reasons) == {2, 3, 4}
    assert "no logged prediction" in reasons[2] and "nobody-sent-this" in reasons[2]
    assert "must be a number" in reasons[3]
    assert "colour" in reasons[4]
    assert body["error"]["type"] == "invalid_feedback"

    stored = runtime.prediction_log.store.read_feedback("shipping")  # type: ignore[union-attr]
    keyed = {(r.request_id, int(r.row)): float(r.label) for r in stored.itertuples()}
    assert keyed[("fb-1", 0)] == 10.0 and keyed[("fb-1", 2)] == 11.0 and keyed[(single_id, 0)] == 12.5

    unauthenticated = client.post("/models/shipping/feedback", json={"request_id": "fb-1", "label": 1.0})
    assert unauthenticated.status_code == 401
    assert client.post("/models/nope/feedback", json={}, headers=AUTH).status_code == 404
    assert client.post("/models/shipping/feedback", content=b"[", headers=AUTH).status_code == 400
    assert client.post("/models/shipping/feedback", json=[], headers=AUTH).status_code == 400


def test_drift_refuses_what_it_cannot_check_with_one_line(
    home: Path, served: tuple[TestClient, ServingRuntime], tmp_path: Path, cli: Cli
) -> None:
    empty = invoke(*cli, "--home", str(tmp_path / "nowhere"), "drift", "shipping")
    few = invoke(*cli, "--home", str(home), "drift", "shipping", "--last", "5")
    bad = invoke(*cli, "--home", str(home), "drift", "shipping", "--since", "2 hours")
    for code, out, err in (empty, few, bad):
        assert code == 1 and not out
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "no logged predictions" in empty[2]
    assert "at least 100" in few[2]
    assert "bad" in bad[2]


def test_late_labels_from_a_file(
    home: Path, served: tuple[TestClient, ServingRuntime], tmp_path: Path, cli: Cli
) -> None:
    client, runtime = served
    response = client.post(
        "/models/shipping/predict",
        json=_rows(shipping(1, seed=5))[0],
        headers={**AUTH, "X-Request-ID": "late-1"},
    )
    assert response.status_code == 200
    assert runtime.prediction_log is not None and runtime.prediction_log.flush(timeout=20)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ["late-1", "never"], "label": [9.5, 1.0]}).to_csv(labels, index=False)
    result = layerops.feedback("shipping", labels, home=home)
    assert result.stored == 1 and [r.index for r in result.rejected] == [1]
    code, out, _ = invoke(*cli, "--home", str(home), "feedback", "shipping", str(labels))
    assert code == 1 and "stored 1 label" in out and "never" in out
    assert np.isclose(
        runtime.prediction_log.store.read_feedback("shipping").set_index("request_id").loc["late-1", "label"],
        9.5,
    ).all()
