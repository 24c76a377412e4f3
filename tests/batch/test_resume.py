"""A run killed midway resumes to exactly what an uninterrupted run writes; another version is refused."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import layerops
from layerops.errors import DataError
from tests.batch.conftest import MODEL, batch_command, environment, rows, run

pytestmark = pytest.mark.slow

ROWS = 20_000
PARTITION_ROWS = 500
PARTITIONS = ROWS // PARTITION_ROWS


def _kill_after(command: list[str], cwd: Path, parts: int) -> None:
    """Start `command`, SIGKILL it once `parts` partitions are written (failing if it ends first)."""
    process = subprocess.Popen(
        command, cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    try:
        while len(list((cwd / "out").glob("part-*.parquet"))) < parts:
            assert process.poll() is None, f"the run ended before it could be killed: {process.stderr}"
            assert time.monotonic() < deadline, "no partition written within 120 s"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()


def _frame(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values("row_number", ignore_index=True)


def test_a_killed_run_resumes_to_the_output_of_an_uninterrupted_one(home: Path, tmp_path: Path) -> None:
    rows(ROWS, bad_every=50).to_csv(tmp_path / "in.csv", index=False)
    args = (MODEL, "in.csv", "out", "--partition-rows", str(PARTITION_ROWS))
    _kill_after(batch_command(home, *args), tmp_path, parts=3)
    out = tmp_path / "out"
    killed = sorted(path.name for path in out.glob("part-*.parquet"))
    assert 3 <= len(killed) < PARTITIONS, "killed too late to test a resume"
    for name in killed:  # a killed run leaves whole files only: each one's footer reads back
        assert pq.read_metadata(out / name).num_rows > 0

    resumed = run(home, *args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{PARTITIONS - len(killed)} partitions written, {len(killed)} skipped" in resumed.stdout
    whole = tmp_path / "whole"
    layerops.batch_predict(MODEL, tmp_path / "in.csv", whole, partition_rows=PARTITION_ROWS, home=home)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())
    assert not list(out.rglob(".*")), "temporary files left behind"
    scored, rejects = _frame(out), _frame(out / "_rejects")
    pd.testing.assert_frame_equal(scored, _frame(whole))
    pd.testing.assert_frame_equal(rejects, _frame(whole / "_rejects"))
    numbers = [*scored["row_number"], *rejects["row_number"]]
    assert sorted(numbers) == list(range(ROWS))  # every row once: none lost, none twice
    assert len(rejects) == 6 * ROWS // 500

    with pytest.raises(DataError) as refused:
        layerops.batch_predict(
            f"{MODEL}@2", tmp_path / "in.csv", out, partition_rows=PARTITION_ROWS, home=home
        )
    assert str(refused.value) == (
        f"OUTPUT {out} was written by version 1 of the model; this run scores with version 2: "
        "pass --overwrite to replace its contents, or choose another OUTPUT"
    )
    summary = layerops.batch_predict(
        f"{MODEL}@2", tmp_path / "in.csv", out, partition_rows=PARTITION_ROWS, overwrite=True, home=home
    )
    assert (summary.partitions_written, summary.partitions_skipped) == (PARTITIONS, 0)
    assert set(_frame(out)["model_version"]) == {2}
