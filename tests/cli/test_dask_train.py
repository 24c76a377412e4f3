"""`layerops train --dask`: the real command in a fresh process, on a local cluster it starts and
stops itself; bad values and a scheduler that is not running are one line, before any work."""

from __future__ import annotations

import csv
import math
import re
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import layerops
from tests.cli.conftest import layerops as run_layerops

SPEC = """
name: iris_dask
data: {path: data.csv}
target: species
candidates:
  - name: linear
  - name: decision_tree
  - name: baseline
tuning: {trials: 3, cv_repeats: 1}
"""

SCORES = ("val_", "cv_std_", "test_")
"""Leaderboard columns that must not depend on where the candidates fitted (not time or latency)."""


def write_project(folder: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(folder / "data.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    return spec


def scores(board: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's candidate and scores, as numbers (NaN for an empty cell)."""
    return [
        {
            k: (v if k == "candidate" else _number(v))
            for k, v in row.items()
            if k == "candidate" or k.startswith(SCORES)
        }
        for row in board
    ]


def _number(value: Any) -> Any:
    number = float(value) if value != "" else math.nan
    return "nan" if math.isnan(number) else number  # NaN != NaN: compare a marker


@pytest.mark.slow
def test_train_on_a_local_cluster_ranks_the_candidates_as_in_one_process(
    tmp_path: Path, iris_frame: pd.DataFrame
) -> None:
    spec = write_project(tmp_path, iris_frame)
    result = run_layerops(
        "--home", "home", "train", "spec.yaml", "--dask", "local:2", "--no-register", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "candidates run on a local Dask cluster (local:2): 2 workers, 2 threads" in result.stdout
    for bar in (r"linear\b.* 3/3 +done", r"decision_tree\b.* 3/3 +done", r"baseline\b.* 1/1 +done"):
        assert re.search(bar, result.stdout), (bar, result.stdout)  # progress came back from the workers
    assert "Traceback" not in result.stdout + result.stderr and result.stderr == ""
    with (tmp_path / "home" / "leaderboards" / "iris_dask.csv").open(encoding="utf-8") as saved:
        on_dask: list[dict[str, Any]] = list(csv.DictReader(saved))
    alone = layerops.train(spec, register=False)
    in_process = [{str(k): v for k, v in row.items()} for row in alone.leaderboard.to_dict("records")]
    assert scores(on_dask) == scores(in_process)
    assert on_dask[0]["candidate"] == alone.winner


@pytest.mark.parametrize("value", ["local:0", "local:x", "tcp://scheduler", "scheduler:8786"])
def test_a_bad_dask_value_is_a_usage_error_naming_the_option_and_what_it_takes(
    tmp_path: Path, value: str
) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    result = run_layerops("--home", "home", "train", "spec.yaml", "--dask", value, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "Invalid value" in line]
    assert f"Invalid value for '--dask': '{value}'; use local:N (N >= 1" in line
    assert "tcp://scheduler:8786" in line
    assert "Traceback" not in result.stderr and not (tmp_path / "home").exists()


def test_a_scheduler_that_is_not_running_fails_in_a_second_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # released: nothing listens there
    start = time.monotonic()
    result = run_layerops(
        "--home", "home", "train", "spec.yaml", "--dask", f"tcp://127.0.0.1:{port}", cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --dask: no Dask scheduler answered at tcp://127.0.0.1:{port} (Connection refused); "
        "start one (dask scheduler) or use local:N"
    ]
    assert time.monotonic() - start < 10  # the process start-up included; the check itself is instant
    assert not (tmp_path / "home").exists()  # before the repository and the data
