"""Memory follows the partition, not the input: a CSV three times the allowance is scored within it.

Measured in a fresh process (its peak RSS, VmHWM): it scores a one-partition file first, which
loads everything a run needs (pyarrow, ONNX Runtime, the model from the local bundle cache), and
takes its peak RSS as the baseline; then it scores the large file. The allowance is the baseline
plus 128 MiB, a third of the large input. Reading the large file whole would need more than the
whole file (its text as Arrow strings); streaming it needs what the CSV reader reads ahead (~36
blocks of 512 KiB, parsed) and the two partitions more that are read ahead and written while one
is scored (70-75 MiB in all, measured).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from layerops.api.batch import load_scoring_model
from tests.batch.conftest import MODEL, environment

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc/self/status"),
]

PARTITION_ROWS = 2_500
CHUNKS = 80
"""The large input: CHUNKS blocks of PARTITION_ROWS rows (200,000 rows of ~2,100 bytes: ~400 MiB)."""
ALLOWANCE = 128 * 2**20
"""Above the one-partition run's peak: a third of the large input."""

PEAKS = """
import pathlib, sys
import layerops
model, home, small, large, out, rows = sys.argv[1:]
def peak():
    status = pathlib.Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))
layerops.batch_predict(model, small, out + "/small", partition_rows=int(rows), home=home)
baseline = peak()
summary = layerops.batch_predict(model, large, out + "/large", partition_rows=int(rows), home=home)
print(baseline, peak(), summary.partitions_written, int("mlflow" in sys.modules))
"""
"""Peak RSS after scoring the small file, then after the large one. Linux's VmHWM, not
`ru_maxrss`: that one survives `exec`, so a child of a large process (pytest's, after training)
starts with its parent's peak."""


def _write_csv(path: Path, chunks: int) -> None:
    """Rows for the model plus a wide text column, written chunk by chunk (deterministic)."""
    rng = np.random.default_rng(11)
    notes = np.array([f"{i:04x}" * 512 for i in range(1024)], dtype=object)  # 2,048 characters
    with pacsv.CSVWriter(path, _schema()) as writer:
        for chunk in range(chunks):
            n = PARTITION_ROWS
            columns = {
                "id": np.arange(chunk * n, (chunk + 1) * n),
                "x1": rng.normal(size=n).round(4),
                "x2": rng.normal(size=n).round(4),
                "n": rng.integers(0, 5, n),
                "color": rng.choice(np.array(["red", "green", "blue"], dtype=object), n),
                "flag": rng.random(n) < 0.5,
                "note": notes[rng.integers(0, len(notes), n)],
            }
            writer.write_table(pa.table(columns, schema=_schema()))


def _schema() -> pa.Schema:
    types = [pa.int64(), pa.float64(), pa.float64(), pa.int64(), pa.string(), pa.bool_(), pa.string()]
    return pa.schema(list(zip(["id", "x1", "x2", "n", "color", "flag", "note"], types, strict=True)))


def test_an_input_far_above_the_allowance_is_scored_within_it(home: Path, tmp_path: Path) -> None:
    _write_csv(tmp_path / "small.csv", 1)
    _write_csv(tmp_path / "large.csv", CHUNKS)
    size = (tmp_path / "large.csv").stat().st_size
    assert size > 3 * ALLOWANCE
    load_scoring_model(MODEL, home=home)  # the bundle into the local cache: no MLflow import there
    arguments = [MODEL, str(home), str(tmp_path / "small.csv"), str(tmp_path / "large.csv"), str(tmp_path)]
    arguments.append(str(PARTITION_ROWS))
    result = subprocess.run(
        [sys.executable, "-c", PEAKS, *arguments],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    baseline, peak, written, mlflow = map(int, result.stdout.split())
    assert written == CHUNKS
    assert not mlflow  # nothing outside scoring (MLflow's 200+ MB) inflated the baseline
    mib = 2**20
    assert peak < baseline + ALLOWANCE, (
        f"peak RSS {peak / mib:.0f} MiB scoring {size / mib:.0f} MiB; "
        f"after one partition {baseline / mib:.0f} MiB"
    )
