"""layerops, unchanged, against a production MLflow tracking server: PostgreSQL for runs and the
registry, S3 for artifacts through the server's proxy. No client has an AWS or S3 variable: not
this process, which trains, not `layerops serve`, a real process of its own (nor the `models
promote` processes of test_concurrency); only the MLflow server has the credentials and endpoint."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

import layerops
from layerops.datasets import iris
from layerops.errors import RepositoryUnavailableError
from layerops.repository.factory import load_bundle_quickly, open_reader
from layerops.repository.mlflow_repo import DIGEST_TAG, MlflowRepository
from layerops.settings import load_settings
from tests.production.stack import (
    BIN,
    PROXIED_PREFIX,
    S3Store,
    TrackingServer,
    clean_environment,
    free_port,
    running,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SPEC = """
name: flowers
description: iris through a tracking server
data: {{path: iris.csv}}
target: species
seed: {seed}
cleaning: {{collinearity_threshold: null}}
candidates:
  - name: decision_tree
    params: {{max_depth: {depth}}}
tuning: {{trials: 1, cv_folds: 0}}
"""
KEY = "production-tests-key-0123456789"
ROW = {"sepal_length": 6.3, "sepal_width": 2.8, "petal_length": 5.1, "petal_width": 1.5}


def test_train_serve_predict_and_reload_through_the_tracking_server(
    server: TrackingServer, s3_store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith(("AWS_", "MLFLOW_S3_"))]:
        monkeypatch.delenv(key)  # this process trains: it gets no storage credentials either
    iris().to_csv(tmp_path / "iris.csv", index=False)
    for version, depth in ((1, 2), (2, 3)):
        (tmp_path / f"v{version}.yaml").write_text(SPEC.format(seed=version, depth=depth), encoding="utf-8")
    home = tmp_path / "home"

    trained = layerops.train(
        tmp_path / "v1.yaml", alias="production", home=home, tracking_uri=server.url, jobs=1
    )

    assert trained.version == 1
    repository = MlflowRepository(server.url, cache_dir=tmp_path / "checks")
    first = repository.resolve_alias("flowers", "production")
    assert first.version == 1
    # The artifacts went through the server's proxy (an `mlflow-artifacts:` source, and no local
    # folder), they are in the bucket under the server's destination, and they are the bytes the
    # version's digest pins.
    assert first.source.startswith("mlflow-artifacts:/")
    assert not (home / "artifacts").exists()
    manifests = [k for k in s3_store.keys(f"{PROXIED_PREFIX}/") if k.endswith("model/bundle/manifest.json")]
    (manifest,) = [k for k in manifests if f"/{first.run_id}/" in k]
    assert s3_store.sha256(manifest) == first.tags[DIGEST_TAG]
    # The read path the drift commands use: a verified copy lands in the home's bundle cache.
    reader = load_settings(home=tmp_path / "reader", tracking_uri=server.url)
    assert load_bundle_quickly(reader, "flowers", 1, native=False).metadata.name == "flowers"
    assert (tmp_path / "reader" / "cache" / "bundles" / first.tags[DIGEST_TAG] / "manifest.json").is_file()

    # `layerops serve` in a process of its own whose environment has no AWS or MLflow variable.
    port = free_port()
    serving = {
        **clean_environment(LAYEROPS_HOME=str(home), LAYEROPS_TRACKING_URI=server.url),
        "LAYEROPS_API_KEYS": KEY,
        "LAYEROPS_MODELS": "flowers",
        "LAYEROPS_RELOAD_INTERVAL_SECONDS": "1",
        "LAYEROPS_DRIFT_INTERVAL_SECONDS": "0",
        "LAYEROPS_PREDICTION_LOG": "off",
    }
    command = (str(BIN / "layerops"), "serve", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    with running(command, serving, tmp_path / "serve.log") as process:
        wait_until(lambda: _status(f"{url}/health/ready") == 200, process, tmp_path / "serve.log", 120)
        assert _predict(url)["version"] == 1

        second = layerops.train(tmp_path / "v2.yaml", home=home, tracking_uri=server.url, jobs=1)
        assert second.version == 2
        layerops.models.promote("flowers", version=2, reason="second", tracking_uri=server.url, home=home)

        deadline = time.monotonic() + 60
        while (answer := _predict(url))["version"] != 2:  # the server polls the alias every second
            assert time.monotonic() < deadline, f"the server still serves {answer}"
            time.sleep(0.2)
        assert answer["predictions"] and answer["model"] == "flowers"
        health = httpx.get(f"{url}/health/ready", timeout=5).json()
        assert health["models"]["flowers"]["version"] == 2 and not health["failures"]
    log = (tmp_path / "serve.log").read_text(encoding="utf-8")
    assert "reloaded flowers: v1 -> v2" in log


def test_a_tracking_server_that_is_down_is_one_line_naming_its_redacted_uri(tmp_path: Path) -> None:
    uri = f"http://layerops:hunter2-secret@127.0.0.1:{free_port()}"  # nothing listens there

    with pytest.raises(RepositoryUnavailableError) as caught:
        open_reader(load_settings(home=tmp_path / "home", tracking_uri=uri))

    (line,) = str(caught.value).splitlines()
    assert "hunter2" not in line
    assert "http://layerops:***@127.0.0.1:" in line and "Connection refused" in line


def _status(url: str) -> int:
    return httpx.get(url, timeout=2).status_code


def _predict(url: str) -> dict[str, object]:
    response = httpx.post(
        f"{url}/models/flowers/predict", json=ROW, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json())
