"""Hot reload in-process: a new version is swapped in; a broken one leaves the old one serving."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from layerops.delivery.app import create_app
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.api import ModelRepository
from layerops.repository.mlflow_repo import bundle_uri
from layerops.spec import parse_spec
from layerops.training.pipeline import train
from tests.delivery.conftest import ADMIN, ADMIN_KEY, IRIS_ROW, USER, USER_KEY, train_demo_models


def _second_iris(home: Path, data: str = "iris.csv", repository: ModelRepository | None = None) -> int:
    """Train iris v2 (a linear model) on `data` in the demo home (made unless `repository` is given)."""
    repository = repository or train_demo_models(home)
    spec = parse_spec(
        {
            "name": "iris",
            "data": {"path": data},
            "target": "species",
            "cleaning": {"collinearity_threshold": None},
            "candidates": [{"name": "linear"}],
            "tuning": {"trials": 1},
        },
        base_dir=home / "data",
    )
    version = train(spec, repository).version
    assert version is not None
    return version.version


def _client(home: Path, **options: object) -> TestClient:
    settings = ServeSettings(
        home=home,
        models=["iris@production"],
        **options,
        api_keys=[USER_KEY],
        admin_api_keys=[ADMIN_KEY],
        reload_interval_seconds=0,
    )
    from layerops.repository.factory import open_repository

    return TestClient(create_app(build_runtime(settings, open_repository(settings))), headers=USER)


def test_reload_swaps_in_the_promoted_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    v2 = _second_iris(home)
    with _client(home, on_demand_versions=["iris@1"]) as client:
        assert client.post("/models/iris/predict", json=IRIS_ROW).json()["version"] == 1
        from layerops.repository.factory import open_repository

        open_repository(ServeSettings(home=home)).set_alias("iris", "production", v2, reason="test")
        outcomes = client.post("/admin/reload", headers=ADMIN).json()["outcomes"]
        assert outcomes == [{"name": "iris", "status": "swapped", "previous": 1, "version": v2, "reason": ""}]
        assert client.post("/models/iris/predict", json=IRIS_ROW).headers["X-Model-Version"] == str(v2)
        assert client.post("/models/iris/versions/1/predict", json=IRIS_ROW).json()["version"] == 1


def test_a_broken_new_version_keeps_the_old_one_serving(tmp_path: Path) -> None:
    home = tmp_path / "home"
    v2 = _second_iris(home)
    with _client(home) as client:
        from layerops.repository.factory import open_repository

        repository = open_repository(ServeSettings(home=home))
        folder = Path(bundle_uri(repository.get_version("iris", v2)).removeprefix("file://"))
        (folder / "metadata.json").write_text("{}")  # tampered after registration
        repository.set_alias("iris", "production", v2, reason="test")
        outcome = client.post("/admin/reload", headers=ADMIN).json()["outcomes"][0]
        assert (
            outcome["status"] == "failed" and outcome["version"] == 1 and "metadata.json" in outcome["reason"]
        )
        response = client.post("/models/iris/predict", json=IRIS_ROW)
        assert response.status_code == 200 and response.json()["version"] == 1
        ready = client.get("/health/ready").json()
        assert ready["status"] == "ready" and "iris" in ready["failures"]
        metrics = client.get("/metrics").text
        assert 'layerops_reloads_total{model="iris",outcome="failure"} 1.0' in metrics


def test_after_a_reload_the_docs_show_the_new_versions_inputs(tmp_path: Path) -> None:
    import pandas as pd

    home = tmp_path / "home"
    repository = train_demo_models(home)
    narrow = pd.read_csv(home / "data" / "iris.csv").drop(columns=["petal_width"])
    narrow.to_csv(home / "data" / "iris_narrow.csv", index=False)
    version = _second_iris(home, "iris_narrow.csv", repository)

    def documented_inputs(client: TestClient) -> set[str]:
        body = client.get("/openapi.json").json()["paths"]["/models/iris/predict"]["post"]["requestBody"]
        row = body["content"]["application/json"]["schema"]["oneOf"][0]
        return set(row["properties"])

    with _client(home) as client:
        assert "petal_width" in documented_inputs(client)
        repository.set_alias("iris", "production", version, reason="test")
        assert client.post("/admin/reload", headers=ADMIN).json()["outcomes"][0]["status"] == "swapped"
        assert documented_inputs(client) == {"sepal_length", "sepal_width", "petal_length"}
        narrow_row = {k: v for k, v in IRIS_ROW.items() if k != "petal_width"}
        assert client.post("/models/iris/predict", json=narrow_row).json()["version"] == version
