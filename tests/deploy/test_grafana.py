"""deploy/grafana/dashboards/layerops.json: a well-formed Grafana dashboard with the panels the
issue asks for (its PromQL runs against a real Prometheus in test_prometheus_live.py)."""

from __future__ import annotations

import re

from tests.deploy.promql import METRIC_NAME, dashboard, panels

WITHOUT_MODEL_LABEL = {
    "layerops_in_flight_requests",
    "layerops_prediction_log_rows_total",
    "layerops_prediction_log_batches_total",
    "layerops_prediction_log_queued_rows",
}
"""The server's series that carry no `model` label (delivery/metrics.py, delivery/monitoring.py)."""


def targets_of(title_part: str) -> list[str]:
    """The expressions of the one panel whose title contains `title_part`."""
    (panel,) = [p for p in panels(dashboard()) if title_part in p["title"]]
    return [target["expr"] for target in panel["targets"]]


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "layerops" and board["schemaVersion"] >= 36
    found = panels(board)
    assert len({p["id"] for p in found}) == len(found), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    for panel in found:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    (variable,) = board["templating"]["list"]
    assert variable["name"] == "model" and variable["includeAll"] and variable["allValue"] == ".+"
    # the model selector applies wherever the series have a model label
    for panel in found:
        for target in panel.get("targets", []):
            if not set(METRIC_NAME.findall(target["expr"])) <= WITHOUT_MODEL_LABEL:
                assert 'model=~"$model"' in target["expr"], f"{panel['title']}: {target['expr']}"


def test_the_panels_the_issue_asks_for() -> None:
    (rps,) = targets_of("Requests per second by model and status")
    assert "rate(layerops_requests_total" in rps and "by (model, status)" in rps
    quantiles = targets_of("Latency p50 / p95 / p99")
    assert [re.findall(r"histogram_quantile\(([\d.]+),", q)[0] for q in quantiles] == ["0.5", "0.95", "0.99"]
    assert all("layerops_request_duration_seconds_bucket" in q for q in quantiles)
    errors = targets_of("Error rate")
    assert 'status=~"5.."' in errors[0] and "/" in errors[0]
    (per_class,) = targets_of("Predictions per class")
    assert "layerops_predictions_total" in per_class and "class" in per_class
    for statistic in ("psi", "ks"):
        (drift,) = targets_of(f"Feature drift: {'PSI' if statistic == 'psi' else 'KS'}")
        assert (
            "layerops_feature_drift" in drift and f'statistic="{statistic}"' in drift and "feature" in drift
        )
    (versions,) = targets_of("Models served")
    assert "layerops_model_info" in versions and "version" in versions and "engine" in versions
    (variants,) = targets_of("by variant and version")
    assert "by (model, variant, version)" in variants
    (share,) = targets_of("Traffic share by policy")
    assert "layerops_traffic_share_percent" in share
