"""Scheduled retraining: the Prefect example flow, the Kubernetes CronJob and the crontab line.

The flow's function runs without a Prefect server (`retrain_flow.fn`, the API URL pointing
nowhere); the CronJob's and the crontab's commands are parsed by the real `layerops` command
line, so a renamed or removed flag fails here.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
import yaml

from layerops.cli.main import app
from layerops.datasets import shipping
from tests.conftest import service_unavailable
from tests.retraining import log_predictions, registered_home, shifted

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "examples" / "orchestration" / "prefect_flow.py"
CRONJOB = ROOT / "deploy" / "k8s" / "base" / "retrain-cronjob.yaml"
CRONTAB = ROOT / "deploy" / "retrain.crontab"


def _flow_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The example imported with its own PREFECT_HOME and an API URL where nothing listens."""
    if importlib.util.find_spec("prefect") is None:
        service_unavailable("prefect is not installed: uv sync --group orchestration (make test does)")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # any API call would fail
    spec = importlib.util.spec_from_file_location("prefect_flow_example", FLOW)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_prefect_flow_retrains_a_drifted_model_without_a_prefect_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _flow_module(monkeypatch, tmp_path)
    assert module.retrain_flow.name == "layerops-retrain" and module.NIGHTLY == "0 3 * * *"
    home = registered_home(tmp_path / "work")
    log_predictions(home, shifted(shipping(500, seed=22)))
    spec = str(tmp_path / "work" / "spec.yaml")

    outcomes: list[dict[str, Any]] = module.retrain_flow.fn({"shipping": spec}, home=str(home))

    assert [(o["name"], o["status"], o["version"]) for o in outcomes] == [("shipping", "candidate", 2)]
    assert outcomes[0]["trigger"].startswith("drift: ") and outcomes[0]["gate"][-1] == "  verdict: PASSED"
    assert "shipping: candidate (version 2" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="could not run for ghost"):
        module.retrain_flow.fn({"ghost": spec}, home=str(home))  # the spec names another model


def _parses(args: list[str]) -> Any:
    """`args` (after `layerops`) parsed by the real command line (typer's click context); a bad
    flag raises click's usage error."""
    group: Any = typer.main.get_command(app)  # typer's own copy of click's Group
    root = group.make_context("layerops", [*args[:1]], resilient_parsing=True)
    command = group.get_command(root, args[0])
    assert command is not None, f"no command {args[0]!r}"
    return command.make_context(args[0], list(args[1:]), parent=root)


def test_the_cronjob_runs_a_real_retrain_command_nightly_with_the_log_url_from_a_secret() -> None:
    cronjob = yaml.safe_load(CRONJOB.read_text(encoding="utf-8"))
    assert (cronjob["apiVersion"], cronjob["kind"]) == ("batch/v1", "CronJob")
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 3 * * *" and spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert isinstance(job["backoffLimit"], int) and job["backoffLimit"] <= 2
    gate_refused = job["podFailurePolicy"]["rules"][0]
    assert gate_refused["action"] == "FailJob" and gate_refused["onExitCodes"]["values"] == [4]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    sources = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
    assert sources == {
        "LAYEROPS_TRACKING_URI": {
            "configMapKeyRef": {"name": "layerops-config", "key": "LAYEROPS_TRACKING_URI"}
        },
        "LAYEROPS_PREDICTION_LOG": {"secretKeyRef": {"name": "layerops-database", "key": "prediction-log"}},
    }

    command = container["command"]
    assert command[:2] == ["layerops", "retrain"]
    parsed = _parses(command[1:]).params
    assert parsed["name"] == "shipping" and parsed["if_drift"] is True
    assert parsed["spec"] == Path("/specs/shipping.yaml")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(parsed["spec"]).startswith(mounts["specs"] + "/")


def test_the_crontab_line_runs_a_real_retrain_command() -> None:
    lines = [line for line in CRONTAB.read_text(encoding="utf-8").splitlines() if line[:1].isdigit()]
    assert len(lines) == 1
    fields = lines[0].split(maxsplit=5)
    assert fields[:5] == ["0", "3", "*", "*", "*"]
    words = shlex.split(fields[5])
    start = words.index("&&") + 1  # cd FOLDER && .venv/bin/layerops retrain ... >> LOG 2>&1
    assert Path(words[start]).name == "layerops"
    parsed = _parses(words[start + 1 : words.index(">>")]).params
    assert parsed["name"] == "shipping" and parsed["if_drift"] is True and parsed["spec"] is not None


def test_a_flag_the_command_lacks_fails_the_parse() -> None:
    with pytest.raises(Exception) as info:
        _parses(["retrain", "shipping", "--spec", "s.yaml", "--if-drifted"])
    assert type(info.value).__name__ == "NoSuchOption" and "--if-drifted" in str(info.value)
