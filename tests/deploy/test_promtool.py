"""deploy/prometheus/ checked by Prometheus' own tool, promtool: both scrape configs, the alert rules,
and the rules' unit tests (alerts_test.yml fires each alert from synthetic series and shows it
silent below its threshold)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.promql import ALERTS, alert_expressions
from tests.deploy.stack import DEPLOY, tool, yaml_documents

pytestmark = pytest.mark.slow  # each test runs promtool

PROMETHEUS = DEPLOY / "prometheus"
CONFIGS = ["prometheus.yml", "prometheus-kubernetes.yml"]


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def alert_names() -> list[str]:
    return [e.where.rsplit("/", 1)[1] for e in alert_expressions()]


@pytest.mark.parametrize("name", CONFIGS)
def test_the_scrape_config_is_valid_with_its_rules_and_key_file(name: str, tmp_path: Path) -> None:
    """The whole check (rule files loaded and checked, the key file must exist): the config with
    only its credentials_file pointed at a file that exists here, next to a copy of alerts.yml."""
    (config,) = yaml_documents(PROMETHEUS / name)
    key = tmp_path / "metrics_key"
    key.write_text("a-metrics-key", encoding="utf-8")
    keyed = [job for job in config["scrape_configs"] if "authorization" in job]
    assert [job["job_name"] for job in keyed] == ["layerops"]  # /metrics of layerops wants a key
    keyed[0]["authorization"]["credentials_file"] = str(key)
    (tmp_path / name).write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / ALERTS.name).write_bytes(ALERTS.read_bytes())
    result = promtool("check", "config", name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout
    assert {job["job_name"] for job in config["scrape_configs"]} >= {"layerops", "mlflow"}


@pytest.mark.parametrize("name", CONFIGS)
def test_the_scrape_config_as_committed_has_valid_syntax(name: str) -> None:
    result = promtool("check", "config", "--syntax-only", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid prometheus config file syntax" in result.stdout


def test_the_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout
    assert len(alert_names()) == len(set(alert_names())) == 11


def test_every_alert_fires_in_the_unit_tests_and_stays_silent_below_its_threshold() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    (tests,) = yaml_documents(PROMETHEUS / "alerts_test.yml")
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == silent == set(alert_names())


def test_a_broken_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: with the error-rate threshold doubled, the 9 % case no longer fires."""
    rules = ALERTS.read_text(encoding="utf-8")
    assert rules.count("> 0.05") == 1
    (tmp_path / ALERTS.name).write_text(rules.replace("> 0.05", "> 0.10"), encoding="utf-8")
    (tmp_path / "alerts_test.yml").write_bytes((PROMETHEUS / "alerts_test.yml").read_bytes())
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert "LayeropsHighErrorRate" in result.stdout + result.stderr
