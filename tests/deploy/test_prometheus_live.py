"""The dashboard's and the alerts' PromQL against a real Prometheus scraping a real `layerops serve`.

One server and one Prometheus for the module. The server serves iris (v1 production, v2 a canary
whose predictions differ, so the analysis rolls it back) and iris_strict (a timeout of 10 ms, so
a 10,000-row request is a 504), logs predictions to Parquet with a queue of 200 rows (so a 201-row
request is dropped and counted) and checks drift every second. Prometheus runs
deploy/prometheus/prometheus.yml with its alert rules, only its targets pointed at loopback and its
scrape and evaluation intervals at 1 s.

What "returns a series" means for an expression with a threshold: every comparison is made a
`bool` one (`x > 0.05` → `x > bool 0.05`, see `promql.without_thresholds`), so the series the
alert would compare are returned whether or not they pass. Grafana's variables are replaced as
Grafana would (`$__rate_interval` → 1m, `$model` → its "All" value `.+`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests.deploy.promql import (
    ALERTS,
    METRIC_NAME,
    Expression,
    alert_expressions,
    dashboard_expressions,
    without_thresholds,
)
from tests.deploy.stack import (
    ADMIN_KEY,
    DEPLOY,
    IRIS_FEATURES,
    KEY,
    free_port,
    layerops_server,
    prometheus_server,
    tool,
    train_iris_models,
    yaml_documents,
)

pytestmark = pytest.mark.slow

LOG_QUEUE_ROWS = 200
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass(frozen=True)
class Stack:
    """The running server and Prometheus, and what the server exported once traffic had run."""

    server: str
    prometheus: str
    exported: frozenset[str]
    """Every sample name the server's /metrics declares (histograms: `_bucket`, `_sum`, `_count`)."""


def exported_names(text: str) -> frozenset[str]:
    """The sample names declared by the `# TYPE` lines of a Prometheus text exposition."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            names.update(name + suffix for suffix in suffixes)
    return frozenset(names)


def scrape_config(tmp: Path, server: str, prometheus_port: int) -> Path:
    """deploy/prometheus/prometheus.yml with its targets on loopback, 1 s intervals and the metrics
    key in a file; next to a copy of its rule file."""
    (config,) = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    key_file = tmp / "metrics_key"
    key_file.write_text(KEY, encoding="utf-8")
    targets = {
        "layerops": server,
        "mlflow": f"127.0.0.1:{free_port()}",  # nobody listens: up{job="mlflow"} is 0
        "prometheus": f"127.0.0.1:{prometheus_port}",
    }
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(targets), "a new scrape job: give it a loopback target here"
    for name, job in jobs.items():
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [targets[name]]}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key_file)
    (tmp / ALERTS.name).write_bytes(ALERTS.read_bytes())
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def drive_traffic(url: str) -> None:
    """Requests that make every series of the dashboard and the alerts exist: predictions for both
    variants of the canary until it is rolled back and drift is checked, a 422, a 504 and dropped
    log rows."""
    rng = np.random.default_rng(0)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        wait_for(lambda: canary(client, admin).get("status") == "running", "the canary to start")
        rows = rng.uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], size=(200, 4))
        for row in rows:
            answer = client.post(
                "/models/iris/predict", json=dict(zip(IRIS_FEATURES, row.tolist(), strict=True))
            )
            assert answer.status_code == 200, answer.text
        assert client.post("/models/iris/predict", json={"sepal_length": "long"}).status_code == 422
        block = [dict.fromkeys(IRIS_FEATURES, 1.0)]
        assert client.post("/models/iris/predict", json=block * (LOG_QUEUE_ROWS + 1)).status_code == 200
        timed_out = 'layerops_requests_total{model="iris_strict",route="/models/{name}/predict",status="504"'
        for _ in range(5):  # a 504 counted for the model: the timeout hit after the body was read
            assert client.post("/models/iris_strict/predict", json=block * 10_000).status_code == 504
            if timed_out in client.get("/metrics").text:
                break
        wait_for(lambda: canary(client, admin).get("status") == "rolled_back", "the canary's rollback")
        wait_for(lambda: "layerops_drift_window_rows{" in client.get("/metrics").text, "a drift check")


def canary(client: httpx.Client, admin: dict[str, str]) -> dict[str, Any]:
    state: dict[str, Any] = client.get("/admin/traffic", headers=admin).json()["models"]["iris"]
    return state.get("canary") or {}


def wait_for(check: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tool("prometheus")
    tmp = tmp_path_factory.mktemp("deploy-live")
    home = tmp / "home"
    train_iris_models(home)
    traffic = tmp / "traffic.yaml"
    analysis = {"window_seconds": 60, "min_requests": 20, "max_prediction_distance": 0.1}
    policy = {"canary": {"steps": [50, 100], "step_seconds": 600, "analysis": analysis}}
    traffic.write_text(yaml.safe_dump({"models": {"iris": policy}}), encoding="utf-8")
    settings = {
        "LAYEROPS_MODELS": "iris,iris_strict",
        "LAYEROPS_TRAFFIC_FILE": str(traffic),
        "LAYEROPS_MODEL_TIMEOUTS": '{"iris_strict": 0.01}',
        "LAYEROPS_PREDICTION_LOG_QUEUE_ROWS": str(LOG_QUEUE_ROWS),
        "LAYEROPS_DRIFT_INTERVAL_SECONDS": "1",
        "LAYEROPS_RELOAD_INTERVAL_SECONDS": "1",
        "LAYEROPS_RELEASE_INTERVAL_SECONDS": "0.2",
    }
    server_port, prometheus_port = free_port(), free_port()
    config = scrape_config(tmp, f"127.0.0.1:{server_port}", prometheus_port)
    # Prometheus first: its service discovery takes seconds, which pass while the server loads
    with (
        prometheus_server(config, tmp / "tsdb", tmp / "prometheus.log", prometheus_port) as prometheus,
        layerops_server(home, tmp / "server.log", server_port, **settings) as server,
    ):
        scraping = 'up{job="layerops"} == 1'
        wait_for(lambda: query(prometheus, scraping)["data"]["result"], "the first scrape")
        drive_traffic(server)
        text = httpx.get(f"{server}/metrics", headers=AUTH).text
        # two scrapes since the last request, as a rate() over a series born by it needs
        ended = time.time()

        def scraped_twice() -> object:
            since = f"{max(1, int((time.time() - ended) * 1000))}ms"
            answer = query(prometheus, f'count_over_time(up{{job="layerops"}}[{since}]) >= 2')
            assert answer["status"] == "success", answer
            return answer["data"]["result"]

        wait_for(scraped_twice, "two scrapes after the traffic")
        yield Stack(server, prometheus, exported_names(text))


def query(prometheus: str, promql: str) -> dict[str, Any]:
    """Prometheus' answer to an instant query (its JSON), whatever the status."""
    answer: dict[str, Any] = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}).json()
    return answer


def series_of(stack: Stack, expression: Expression, seconds: float = 20) -> list[dict[str, Any]]:
    """The series `expression` (thresholds made `bool`) returns, waiting up to `seconds` for the
    scrapes a rate() needs; asserts that Prometheus parses it."""
    promql = without_thresholds(expression.promql)
    deadline = time.monotonic() + seconds
    while True:
        answer = query(stack.prometheus, promql)
        assert answer["status"] == "success", f"{expression.where}: {answer.get('error')}\n{promql}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_prometheus_scrapes_the_server_with_the_deploy_config_and_its_key(stack: Stack) -> None:
    targets = httpx.get(f"{stack.prometheus}/api/v1/targets").json()["data"]["activeTargets"]
    health = {t["labels"]["job"]: t["health"] for t in targets}  # mlflow: nobody listens
    assert health == {"layerops": "up", "mlflow": "down", "prometheus": "up"}


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_expression_parses_names_real_metrics_and_returns_series(stack: Stack, source: str) -> None:
    expressions = alert_expressions() if source == "alerts" else dashboard_expressions()
    assert expressions
    for expression in expressions:
        unknown = set(METRIC_NAME.findall(expression.promql)) - stack.exported
        assert not unknown, f"{expression.where} names metrics the server does not export: {unknown}"
        assert series_of(stack, expression), (
            f"{expression.where} returned no series: {without_thresholds(expression.promql)}"
        )


def test_the_alert_rules_evaluate_cleanly_and_fire_on_real_events(stack: Stack) -> None:
    def firing() -> set[tuple[str, str]]:
        result = query(stack.prometheus, 'ALERTS{alertstate="firing"}')["data"]["result"]
        return {(r["metric"]["alertname"], r["metric"].get("model", "")) for r in result}

    # the rollback and the dropped rows happened once, after Prometheus started: their counters were
    # born at 1, which increase() alone would never see
    expected = {("LayeropsCanaryRolledBack", "iris"), ("LayeropsPredictionLogDropping", "iris")}
    wait_for(lambda: expected <= firing(), f"{expected} to fire (firing: {firing()})")
    groups = httpx.get(f"{stack.prometheus}/api/v1/rules").json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(alert_expressions())
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
