"""Rows per second of `layerops batch-predict` beside ONNX Runtime alone, in process and on Dask.

One run, one data set: `--rows` rows (2,000,000 by default) × 20 numeric features made by
scikit-learn's `make_classification` (seeded) plus an `id`, written as one Parquet file with a
row group per partition; a random forest (`--trees`, `--depth`: by default the project's
reference forest, 100 trees of depth 12, as in bench/serve.py) trained by layerops on the first
`--train-rows` rows and registered in a temporary home. Then, over the same rows in partitions
of `--partition-rows`:

- raw ONNX Runtime: `session.run` on the bundle's export over the rows already in memory (one
  [N, 1] array per feature, the graph's inputs), same chunk size; the best of ONNX Runtime's
  default session and the in-process scorer's (all cores, no spinning): the reference;
- `batch-predict` in process: read, check, score, write Parquet (`layerops.batch_predict`), every
  input column kept (the default);
- `batch-predict --dask` on a `LocalCluster` of 1 and of 2 worker processes (one thread each,
  one ONNX Runtime thread each), started before the clock starts: the summary's time excludes
  the cluster start (printed) and the workers' model load.

Where the in-process time goes is then measured phase by phase (read, check, score, build,
write) over the same partitions. The load average is printed before and after: on a shared
machine, `--repeats N` keeps each path's best of N rounds.

    uv run python bench/batch_predict.py [--rows 2000000] [--partition-rows 200000] [--repeats 1]
    uv run python bench/batch_predict.py --trees 30 --depth 6   # a cheap model: I/O weighs more

Goals: in-process batch-predict ≥ 70 % of raw ONNX Runtime's rows/s; local:2 ≥ 1.6 × local:1.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import layerops
from layerops.api.batch import load_scoring_model
from layerops.batch._parquet import ParquetRun
from layerops.batch.output import with_footer, write_partition
from layerops.batch.scoring import OnnxScorer
from layerops.batch.sources import open_source
from layerops.batch.task import Plan, _scored
from layerops.batch.validation import RowChecker
from layerops.bundle.onnx_io import PROBABILITIES_OUTPUT
from layerops.datasets import synthetic_classification


def _data(folder: Path, rows: int, train_rows: int, partition_rows: int) -> tuple[Path, pa.Table]:
    frame = synthetic_classification(max(rows, train_rows), features=20, seed=0)
    frame.iloc[:train_rows].to_parquet(folder / "train.parquet", index=False)
    table = pa.Table.from_pandas(frame.drop(columns="label").iloc[:rows], preserve_index=False)
    table = table.append_column("id", pa.array(np.arange(rows, dtype=np.int64)))
    path = folder / "rows.parquet"
    pq.write_table(table, path, row_group_size=partition_rows, compression="zstd")
    return path, table


def _train(home: Path, train: Path, trees: int, depth: int) -> None:
    spec = {
        "name": "bench_batch",
        "data": {"path": str(train)},
        "target": "label",
        "task": "classification",
        "cleaning": {"outliers": {"method": "none"}, "collinearity_threshold": None},
        "candidates": [{"name": "random_forest", "params": {"n_estimators": trees, "max_depth": depth}}],
        "selection": {"metric": "accuracy"},
    }
    result = layerops.train(spec, alias="production", home=home)
    print(f"model: random forest, {trees} trees, depth {depth}; ONNX {result.bundle.metadata.onnx.converted}")


def _raw_onnx(home: Path, table: pa.Table, partition_rows: int) -> float:
    """rows/s of `session.run` alone: the best of ONNX Runtime's default session and the scorer's."""
    model, scorer = load_scoring_model("bench_batch", home=home)
    assert isinstance(scorer, OnnxScorer) and model.onnx is not None
    import onnxruntime as ort

    columns = {name: table.column(name).to_numpy() for name in model.metadata.feature_names()}
    default = ort.InferenceSession(model.onnx, providers=["CPUExecutionProvider"])
    best = 0.0
    for session in (default, scorer._session):
        start = time.perf_counter()
        for first in range(0, table.num_rows, partition_rows):
            feeds = {
                name: values[first : first + partition_rows].reshape(-1, 1)
                for name, values in columns.items()
            }
            session.run([PROBABILITIES_OUTPUT], feeds)
        best = max(best, table.num_rows / (time.perf_counter() - start))
    return best


def _phases(home: Path, data: Path, out: Path, partition_rows: int) -> dict[str, float]:
    """Seconds per phase of the in-process path over every partition (what a run does, timed apart)."""
    model, _ = load_scoring_model("bench_batch", home=home)
    assert model.onnx is not None
    scorer = OnnxScorer(model.metadata, model.onnx)
    checker = RowChecker(model.metadata.features)
    spent = dict.fromkeys(("read", "check", "score", "build", "write"), 0.0)
    out.mkdir()
    plan = Plan(str(out), None)
    units = open_source(str(data)).units(partition_rows, None)
    partitions = (
        p for unit in units for p in (unit.partitions() if isinstance(unit, ParquetRun) else [unit])
    )
    while True:
        start = time.perf_counter()
        partition = next(partitions, None)
        spent["read"] += time.perf_counter() - start
        if partition is None:
            return spent
        start = time.perf_counter()
        checked = checker.check(partition.table)
        spent["check"] += time.perf_counter() - start
        start = time.perf_counter()
        output = scorer.predict(checked.valid_values())
        spent["score"] += time.perf_counter() - start
        start = time.perf_counter()
        scored = with_footer(_scored(model, partition, checked, output, None), {"partition": partition.index})
        spent["build"] += time.perf_counter() - start
        start = time.perf_counter()
        write_partition(plan.output, partition.index, scored, None)
        spent["write"] += time.perf_counter() - start


def _on_cluster(home: Path, data: Path, out: Path, workers: int, partition_rows: int) -> float:
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster),
    ):
        started = time.perf_counter() - start
        summary = layerops.batch_predict(
            "bench_batch", data, out, dask=cluster.scheduler_address, partition_rows=partition_rows, home=home
        )
    print(f"  local:{workers}: cluster start {started:.1f} s; {summary.line()}")
    return summary.rows_per_second


def _in_process(home: Path, data: Path, out: Path, partition_rows: int) -> float:
    start = time.perf_counter()
    summary = layerops.batch_predict("bench_batch", data, out, partition_rows=partition_rows, home=home)
    print(f"  in process: {summary.line()} (call {time.perf_counter() - start:.1f} s with the model load)")
    return summary.rows_per_second


def _round(folder: Path, data: Path, table: pa.Table, rows: int, number: int) -> dict[str, float]:
    """One measurement of each path (rows/s), each writing a fresh folder."""
    home = folder / "home"
    return {
        "raw ONNX Runtime": _raw_onnx(home, table, rows),
        "batch-predict in process": _in_process(home, data, folder / f"in-process-{number}", rows),
        "batch-predict local:1": _on_cluster(home, data, folder / f"local1-{number}", 1, rows),
        "batch-predict local:2": _on_cluster(home, data, folder / f"local2-{number}", 2, rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--partition-rows", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1, help="rounds; each path's best round is kept")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="layerops-bench-batch-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        data, table = _data(folder, args.rows, args.train_rows, args.partition_rows)
        print(f"data: {args.rows:,} rows × 20 features + id, {data.stat().st_size / 2**20:.0f} MiB Parquet "
              f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
        _train(folder / "home", folder / "train.parquet", args.trees, args.depth)
        best: dict[str, float] = {}
        for number in range(args.repeats):
            for label, value in _round(folder, data, table, args.partition_rows, number).items():
                print(f"  {label}: {value:,.0f} rows/s")
                best[label] = max(best.get(label, 0.0), value)
        spent = _phases(folder / "home", data, folder / "phases", args.partition_rows)
    total = sum(spent.values())
    print("in-process phases: " + ", ".join(f"{k} {v:.2f} s ({v / total:.0%})" for k, v in spent.items()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    raw = best["raw ONNX Runtime"]
    print(f"\n{'':28}{'rows/s':>12}{'vs raw ORT':>12}")
    for label, value in best.items():
        print(f"{label:28}{value:>12,.0f}{value / raw:>12.2f}")
    inproc, one, two = (best[f"batch-predict {k}"] for k in ("in process", "local:1", "local:2"))
    print(f"in process / raw ORT: {inproc / raw:.2f} (goal ≥ 0.70)")
    print(f"local:2 / local:1:    {two / one:.2f} (goal ≥ 1.60)")


if __name__ == "__main__":
    main()
