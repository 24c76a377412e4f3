"""Exit codes: usage errors are click's (2), user errors one line (1), Ctrl-C "interrupted" (130)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from layerops.errors import NotFoundError
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from tests.cli.conftest import LAYEROPS, environment, layerops


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["trian"], "No such command 'trian'"),
        (["train"], "Missing argument"),
        (["models", "show", "iris", "--version", "abc"], "Invalid value for '--version'"),
        (["--version", "abc"], "No such option: --version"),
        ([], "Usage: layerops"),
    ],
    ids=["typo", "train-without-spec", "version-not-a-number", "unknown-option", "no-arguments"],
)
def test_usage_errors_print_the_usage_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = layerops(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    shown = result.stderr if args else result.stdout  # with no arguments, the help on stdout
    assert expected in shown
    assert "Usage: layerops" in shown
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / ".layerops").exists()


def test_a_bad_setting_names_the_setting_the_value_and_the_allowed_values(tmp_path: Path) -> None:
    for result in (
        layerops("--log-level", "LOUD", "models", "list", cwd=tmp_path),
        layerops("models", "list", cwd=tmp_path, LAYEROPS_LOG_LEVEL="LOUD"),
    ):
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "log_level" in lines[0] and "LAYEROPS_LOG_LEVEL" in lines[0] and "'LOUD'" in lines[0]
        assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in lines[0]
        assert "pydantic" not in lines[0] and "http" not in lines[0]


def test_a_layerops_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "name: x\ntarget: y\ndata: {path: d.csv}\ncandidates: [{name: svm}]\n"
    )
    result = layerops("train", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: spec.yaml: candidates[0].name: unknown candidate 'svm'; choose one of baseline, linear, "
        "decision_tree, random_forest, xgboost, lightgbm"
    ]


SLOW_SPEC = """
name: slow
data: {path: data.csv}
target: label
cleaning: {collinearity_threshold: null}
candidates:
  - name: decision_tree
tuning: {trials: 2000}
"""
"""Thousands of quick trials: still training seconds after the first one, and interruptible."""


@pytest.mark.slow
def test_ctrl_c_during_train_exits_130_says_interrupted_and_registers_nothing(
    tmp_path: Path, registry: Path
) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(2000, 6)), columns=[f"x{i}" for i in range(6)])
    frame["label"] = np.where(frame["x0"] + rng.normal(scale=0.5, size=2000) > 0, "yes", "no")
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "spec.yaml").write_text(SLOW_SPEC, encoding="utf-8")
    home = registry / "home"  # an existing registry: the interrupted run must add nothing to it
    before = {s.name: s.latest_version for s in open_repository(Settings(home=home)).list_models()}
    process = subprocess.Popen(
        [str(LAYEROPS), "--home", str(home), "train", "spec.yaml"],
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        seen = ""
        while "ranking by " not in seen and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, (
                f"exited before training started: {seen}{process.stderr.read() if process.stderr else ''}"
            )
            seen += line
        time.sleep(1.5)  # inside the tuning trials
        assert process.poll() is None, "training finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    repository = open_repository(Settings(home=home), create=False)
    assert {s.name: s.latest_version for s in repository.list_models()} == before
    with pytest.raises(NotFoundError):
        repository.list_versions("slow")


def test_train_into_a_home_that_cannot_be_created_fails_before_training(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n1,a\n2,b\n")
    (tmp_path / "spec.yaml").write_text(
        "name: t\ndata: {path: data.csv}\ntarget: y\ncandidates: [{name: baseline}]\n"
    )
    (tmp_path / "a-file").write_text("")
    result = layerops("--home", "a-file/home", "train", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "cannot open the MLflow repository" in result.stderr and "a-file/home" in result.stderr
    assert "Traceback" not in result.stderr and "loading data" not in result.stdout + result.stderr
