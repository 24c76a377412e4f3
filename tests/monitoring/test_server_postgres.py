"""The server's prediction log on the real PostgreSQL: predictions, feedback and drift through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import layerops
from layerops.api.monitoring import read_log
from layerops.delivery.app import create_app
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.factory import open_repository
from tests.delivery.conftest import IRIS_ROWS, USER, USER_KEY
from tests.monitoring.test_postgres_store import database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
__all__ = ["database"]  # the fresh-database fixture, used below


def test_predictions_feedback_and_drift_through_postgresql(served_home: Path, database: str) -> None:
    settings = ServeSettings(
        home=served_home, api_keys=[USER_KEY], reload_interval_seconds=0, prediction_log=database
    )
    runtime = build_runtime(settings, open_repository(settings))
    ids = []
    with TestClient(create_app(runtime)) as client:
        for _ in range(120):
            response = client.post("/models/iris/predict", json=IRIS_ROWS, headers=USER)
            assert response.status_code == 200
            ids.append((response.headers["x-request-id"], response.json()["predictions"]))
        labels = [
            {"request_id": request_id, "row": row, "label": predictions[row]}
            for request_id, predictions in ids[:50]
            for row in range(3)
        ]
        stored = client.post("/models/iris/feedback", json=labels, headers=USER)
        assert stored.status_code == 200, stored.text
        assert stored.json()["stored"] == 150
    # the app's shutdown wrote and closed the log; another process reads it from PostgreSQL
    frame = read_log("iris", log=database, home=served_home)
    assert len(frame) == 360 and set(frame["request_id"]) == {request_id for request_id, _ in ids}
    report = layerops.drift("iris", log=database, home=served_home)
    assert report.rows == 360 and report.version == 1
    assert report.performance is not None
    assert report.performance.labelled_rows == 150
    assert report.performance.observed == 1.0  # the labels sent were the model's own answers
    assert report.performance.estimated is not None and 0 < report.performance.estimated <= 1
