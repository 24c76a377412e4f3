"""The issue's end-to-end proof: drift → `layerops.retrain(if_drift=True)` → a new version under
`candidate` → the server's canary takes it to production by steps, under load, with zero failed
requests, and the history tells the whole story."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

import layerops
from layerops.datasets import shipping
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from tests.releases.serving import ADMIN, Reply, send, server_process
from tests.retraining import FEATURES, log_predictions, registered_home, shifted

pytestmark = pytest.mark.slow


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = frame[FEATURES].astype(object)
    return rows.where(rows.notna(), None).to_dict(orient="records")  # type: ignore[no-any-return]


def test_retrain_on_drift_then_the_canary_promotes_under_load_with_zero_failures(tmp_path: Path) -> None:
    home = registered_home(tmp_path / "work")
    traffic = shifted(shipping(4000, seed=5))  # what production sees now: drifted
    log_predictions(home, traffic.iloc[:600])

    new_data = shifted(shipping(1500, seed=2))
    result = layerops.retrain(
        "shipping", tmp_path / "work" / "spec.yaml", data=new_data, if_drift=True, since="2h",
        home=home, jobs=1,
    )  # fmt: skip
    assert result.status == "candidate" and result.version == 2, result
    assert result.trigger.startswith("drift")
    repository = open_repository(Settings(home=home))
    assert repository.resolve_alias("shipping", "candidate").version == 2
    assert repository.resolve_alias("shipping", "production").version == 1

    policy_file = tmp_path / "traffic.yaml"
    canary = {
        "steps": [50, 100],
        "step_seconds": 2,
        "analysis": {"window_seconds": 3, "min_requests": 30, "max_prediction_distance": 0.5},
    }
    policy_file.write_text(yaml.safe_dump({"models": {"shipping": {"canary": canary}}}), encoding="utf-8")
    env = {
        "LAYEROPS_MODELS": "shipping",
        "LAYEROPS_TRAFFIC_FILE": str(policy_file),
        "LAYEROPS_RELEASE_INTERVAL_SECONDS": "0.2",
    }
    status: list[str] = []
    with server_process(home, **env) as url:
        done = threading.Event()

        def watch() -> None:
            with httpx.Client(base_url=url, headers=ADMIN) as admin:
                while not done.is_set():
                    state = admin.get("/admin/traffic").json()["models"]["shipping"].get("canary") or {}
                    if state and (not status or status[-1] != f"{state['status']}@{state['share']}"):
                        status.append(f"{state['status']}@{state['share']}")
                    time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        deadline = time.monotonic() + 90

        def finished() -> bool:
            return time.monotonic() > deadline or (bool(status) and status[-1].startswith("promoted"))

        replies: list[Reply] = send(url, _rows(traffic) * 50, model="shipping", concurrency=4, stop=finished)
        tail = send(url, _rows(traffic.iloc[:300]), model="shipping", concurrency=4)
        done.set()
        watcher.join()
    assert status and status[-1].startswith("promoted"), status
    assert [s for s in status if s.startswith("running")][:2] == ["running@50.0", "running@100.0"], status
    assert {r.status for r in replies + tail} == {200}, "a request failed during the release"
    assert {r.version for r in replies} == {"1", "2"}
    assert {r.version for r in tail} == {"2"}  # production is the new version, the canary is over
    assert repository.resolve_alias("shipping", "production").version == 2
    kinds = [e.kind for e in repository.events("shipping")]
    for kind in ("retrain_trained", "canary_started", "canary_advanced", "canary_promoted"):
        assert kind in kinds, kinds
    last = [c for c in repository.history("shipping") if c.alias == "production"][-1]
    assert last.version == 2 and last.details, "the promotion carries its gate report"
