"""Automatic canary analysis and rollback against a running server (its own process).

The issue's proof: a deliberately broken canary (raising on 30 % of inputs, or 50 ms slower) is
back at 0 % within the configured window, no caller sees an error beyond that window's canary
share, the history records the rollback with its numbers, and the state survives a restart.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from layerops.datasets import iris
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from tests.releases.serving import ADMIN, AUTH, Reply, iris_rows, iris_versions, send, server_process

pytestmark = pytest.mark.slow

WINDOW_SECONDS = 6.0
FIRST_STEP = 25.0


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """iris v1 under production, v2 under candidate."""
    home = tmp_path / "home"
    repository = iris_versions(home, 2)
    repository.set_alias("iris", "candidate", 2, reason="fixture: the release under test")
    return home


def canary_policy(path: Path, **analysis: Any) -> Path:
    policy = {
        "models": {
            "iris": {
                "sticky": {"header": "X-User-Id"},
                "canary": {
                    "steps": [FIRST_STEP, 50, 100],
                    "step_seconds": 120,  # no step advances during these tests
                    "analysis": {
                        "window_seconds": WINDOW_SECONDS,
                        "min_requests": 60,
                        "max_error_rate_increase": 0.02,
                        "max_p99_ratio": 1.5,
                        "min_p99_increase_ms": 10,
                        **analysis,
                    },
                },
            }
        }
    }
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


def _load_until_rolled_back(url: str, seconds: float) -> tuple[list[Reply], float | None]:
    """Steady load for `seconds`, watching the canary's status; (replies, when it was rolled back)."""
    rolled_back: list[float] = []
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=url, headers=ADMIN) as admin:
            while not done.is_set():
                canary = admin.get("/admin/traffic").json()["models"]["iris"].get("canary") or {}
                if canary.get("status") == "rolled_back" and not rolled_back:
                    rolled_back.append(time.monotonic())
                time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + seconds
    replies = send(
        url,
        iris_rows(200_000, seed=4),
        concurrency=4,
        users=lambda i: f"user-{i}",
        stop=lambda: time.monotonic() > deadline,
    )
    done.set()
    watcher.join()
    return replies, (rolled_back[0] if rolled_back else None)


def _check_rollback(
    home: Path, replies: list[Reply], rolled_back_at: float | None, kind: str
) -> dict[str, Any]:
    assert rolled_back_at is not None, "the canary was never rolled back"
    first = replies[0].at
    assert rolled_back_at - first <= WINDOW_SECONDS + 5, "not rolled back within the window (+ a tick)"
    after = [r for r in replies if r.at > rolled_back_at + 0.5]
    assert after and {r.version for r in after} == {"1"} and {r.status for r in after} == {200}
    before = [r for r in replies if r.at <= rolled_back_at]
    errors = [r for r in before if r.status != 200]
    # no caller saw an error beyond the canary's share of the window's traffic
    assert len(errors) <= FIRST_STEP / 100 * len(before), (len(errors), len(before))
    canary_share = sum(r.version == "2" for r in before) / len(before)
    assert canary_share <= FIRST_STEP / 100 + 0.05
    repository = open_repository(Settings(home=home))
    events = [e for e in repository.events("iris") if e.kind == "canary_rolled_back"]
    assert len(events) == 1
    numbers = events[0].details["analysis"]["numbers"]
    assert numbers["canary_requests"] >= 60
    assert kind in events[0].message
    changes = [c for c in repository.history("iris") if c.alias == "candidate"]
    assert changes[-1].version is None and "canary rolled back" in changes[-1].reason
    return numbers


def test_a_canary_raising_on_30_percent_is_rolled_back_within_the_window(home: Path, tmp_path: Path) -> None:
    traffic = canary_policy(tmp_path / "traffic.yaml")
    env = {"LAYEROPS_TRAFFIC_FILE": str(traffic), "LAYEROPS_RELEASE_INTERVAL_SECONDS": "0.2"}
    with server_process(home, fault={"fail_share": 0.3}, broken=2, **env) as url:
        replies, rolled_back_at = _load_until_rolled_back(url, WINDOW_SECONDS + 8)
        metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    numbers = _check_rollback(home, replies, rolled_back_at, "error rate")
    assert numbers["canary_error_rate"] > 0.15
    assert 'layerops_rollbacks_total{model="iris"} 1.0' in metrics
    # the decision survives a restart: the new process routes nothing to the rolled-back canary
    with server_process(home, **env) as url:
        state = httpx.get(f"{url}/admin/traffic", headers=ADMIN).json()["models"]["iris"]
        replies = send(url, iris_rows(300, seed=8))
    assert state["canary_share"] == 0
    assert {r.version for r in replies} == {"1"}


def test_a_canary_50_ms_slower_is_rolled_back_within_the_window(home: Path, tmp_path: Path) -> None:
    traffic = canary_policy(tmp_path / "traffic.yaml")
    env = {"LAYEROPS_TRAFFIC_FILE": str(traffic), "LAYEROPS_RELEASE_INTERVAL_SECONDS": "0.2"}
    with server_process(home, fault={"delay": 0.05}, broken=2, **env) as url:
        replies, rolled_back_at = _load_until_rolled_back(url, WINDOW_SECONDS + 8)
    numbers = _check_rollback(home, replies, rolled_back_at, "p99")
    assert numbers["canary_p99_ms"] >= 50


def test_a_canary_answering_wrong_classes_is_rolled_back_on_feedback_labels(
    home: Path, tmp_path: Path
) -> None:
    # fast, error-free and wrong: neither errors, latency nor the class mix give it away (the
    # classes are balanced), only the labels feedback brings
    traffic = canary_policy(tmp_path / "traffic.yaml", min_labelled=40, max_prediction_distance=None)
    env = {
        "LAYEROPS_TRAFFIC_FILE": str(traffic),
        "LAYEROPS_RELEASE_INTERVAL_SECONDS": "0.2",
        "LAYEROPS_PREDICTION_LOG": str(tmp_path / "log"),
    }
    frame = iris()
    features = frame.drop(columns="species")
    rolled_back = None
    with (
        server_process(home, fault={"wrong": True}, broken=2, **env) as url,
        httpx.Client(base_url=url, headers=AUTH) as client,
    ):
        pending: list[dict[str, Any]] = []
        for i in range(3000):
            row = features.iloc[i % len(frame)].to_dict()
            answer = client.post("/models/iris/predict", json=row, headers={"X-User-Id": f"user-{i}"})
            assert answer.status_code == 200
            label = str(frame["species"].iloc[i % len(frame)])
            pending.append({"request_id": answer.headers["x-request-id"], "label": label})
            if len(pending) == 50:
                assert client.post("/models/iris/feedback", json=pending).status_code == 200
                pending = []
                canary = client.get("/admin/traffic", headers=ADMIN).json()["models"]["iris"].get("canary")
                if canary and canary["status"] == "rolled_back":
                    rolled_back = canary
                    break
    assert rolled_back is not None, "the wrong canary was never rolled back"
    assert "accuracy" in rolled_back["reason"]
    events = [
        e for e in open_repository(Settings(home=home)).events("iris") if e.kind == "canary_rolled_back"
    ]
    numbers = events[0].details["analysis"]["numbers"]
    assert numbers["canary_metric"] < numbers["baseline_metric"] - 0.5
