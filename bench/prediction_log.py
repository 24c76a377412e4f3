"""The prediction log's cost on serving, its memory with the store down, and drift on 1M rows.

Three measurements, on the serving benchmark's reference model (a 100-tree forest on 20 features,
trained or reused by `bench/serve.py`'s `prepare_models`):

1. Overhead: `layerops serve` with the prediction log off and on (Parquet files), alternated over
   `--rounds` rounds so drift in the machine's speed hits both; wrk at 1 connection (single-row
   p50) and 16 connections (throughput). Goals: throughput on ≥ 0.95× off; p50 moves < 0.05 ms.
2. Store down: the log pointed at a PostgreSQL port nobody listens on, 16 connections for
   `--down-seconds`; the server's resident memory sampled every 5 s, the dropped and failed
   counters read from /metrics. Goal: memory stays bounded (queue cap × row size).
3. Drift: 1,000,000 logged rows × 20 features written with the Parquet store, then the whole
   `layerops drift NAME --json --html` command timed (start-up, reading, tests, report). Goal < 10 s.

    .venv/bin/python bench/prediction_log.py [--duration 10] [--rounds 3] [--down-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
from serve import (  # the serving benchmark's helpers (bench/ is this script's path)
    API_KEY,
    BIN,
    HOST,
    REFERENCE_MODEL,
    Load,
    Target,
    free_port,
    measure,
    prepare_models,
    running,
    tree_memory,
    write_bodies,
    wrk,
)

from layerops.datasets import synthetic_classification
from layerops.monitoring.parquet_store import ParquetStore


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _target(home: Path, name: str, bodies: dict[str, Path], env: dict[str, str], log: str) -> Target:
    argv = [
        str(BIN / "layerops"), "--home", str(home), "serve",
        "--model", f"{name}@production", "--port", "{port}",
    ]  # fmt: skip
    extra = {
        "LAYEROPS_API_KEYS": API_KEY,
        "LAYEROPS_PREDICTION_LOG": log,
        "LAYEROPS_DRIFT_INTERVAL_SECONDS": "0",
    }
    return Target(
        f"layerops log={'off' if log == 'off' else 'on'}", argv, {**env, **extra}, f"/models/{name}/predict",
        bodies["rows_1"], bodies["rows_batch"], {"X-API-Key": API_KEY},
    )  # fmt: skip


def overhead(
    args: argparse.Namespace, home: Path, name: str, bodies: dict[str, Path], env: dict[str, str], work: Path
) -> list[str]:
    """Log off vs on, alternated; the medians and the goals."""
    runs: dict[str, list[Load]] = {"off": [], "on": []}
    single: dict[str, list[Load]] = {"off": [], "on": []}
    for round_ in range(args.rounds):
        order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
        for mode in order:
            log = "off" if mode == "off" else str(work / f"log-{round_}")
            result = measure(
                _target(home, name, bodies, env, log),
                1,
                {"c1": ("single", 1), "c16": ("single", 16)},
                args,
                work,
            )
            if result.error:
                raise SystemExit(f"server failed: {result.error}")
            runs[mode].append(result.loads["c16"])
            single[mode].append(result.loads["c1"])
    rps = {mode: statistics.median(load.rps for load in loads) for mode, loads in runs.items()}
    p50 = {mode: statistics.median(load.p50_ms for load in loads) for mode, loads in single.items()}
    p50_16 = {mode: statistics.median(load.p50_ms for load in loads) for mode, loads in runs.items()}
    cpu = {mode: statistics.median(load.server_cpu for load in loads) for mode, loads in runs.items()}
    ratio = rps["on"] / rps["off"]
    delta = p50["on"] - p50["off"]
    lines = [
        "| prediction log | c16 req/s | c16 p50 ms | c1 p50 ms | server cores at c16 |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in ("off", "on"):
        lines.append(f"| {mode} | {rps[mode]:.0f} | {p50_16[mode]:.2f} | {p50[mode]:.3f} | {cpu[mode]:.2f} |")
    lines += [
        "",
        "Per-round c16 req/s: "
        + ", ".join(f"{mode} {[round(load.rps) for load in runs[mode]]}" for mode in ("off", "on")),
        f"Throughput on/off at 16 connections: {ratio:.3f} "
        f"(goal ≥ 0.95: {'PASS' if ratio >= 0.95 else 'MISS'})",
        f"Single-row p50 moved by {delta * 1000:+.0f} µs "
        f"(goal < 50 µs: {'PASS' if abs(delta) < 0.05 else 'MISS'})",
    ]
    return lines


def store_down(
    args: argparse.Namespace, home: Path, name: str, bodies: dict[str, Path], env: dict[str, str], work: Path
) -> list[str]:
    """RSS over `--down-seconds` of load with the log's PostgreSQL unreachable."""
    down = f"postgresql://postgres@{HOST}:{_closed_port()}/layerops"
    target = _target(home, name, bodies, env, down)
    port = free_port()
    samples: list[tuple[float, float]] = []
    with running(target, port, work / "down.log", args.start_timeout) as server:
        wrk(port, target, target.single_body, 16, 2.0, server, work)
        start_rss = tree_memory(server)[0]
        loads: list[Load] = []
        thread = threading.Thread(
            target=lambda: loads.append(
                wrk(port, target, target.single_body, 16, args.down_seconds, server, work)
            )
        )
        started = time.perf_counter()
        thread.start()
        while thread.is_alive():
            samples.append((time.perf_counter() - started, tree_memory(server)[0]))
            thread.join(5.0)
        import httpx

        metrics = httpx.get(f"http://{HOST}:{port}/metrics", headers={"X-API-Key": API_KEY}, timeout=10).text
    dropped = _metric(metrics, r'layerops_prediction_log_dropped_total\{model="[^"]+"\}')
    failed = _metric(metrics, r'layerops_prediction_log_batches_total\{result="failed"\}')
    load = loads[0] if loads else None
    peak = max(rss for _, rss in samples)
    middle = [rss for t, rss in samples if t >= args.down_seconds / 2]
    lines = [
        f"Store down for {args.down_seconds:.0f} s at 16 connections: "
        + (f"{load.rps:.0f} req/s, {load.errors} errors, p50 {load.p50_ms:.2f} ms; " if load else "")
        + f"{dropped:,.0f} rows dropped, {failed:.0f} failed write attempts",
        f"RSS before {start_rss:.0f} MiB; during: " + ", ".join(f"{t:.0f}s {rss:.0f}" for t, rss in samples),
        f"RSS peak {peak:.0f} MiB; second half "
        f"{min(middle, default=peak):.0f}–{max(middle, default=peak):.0f} MiB (flat once the queue is "
        f"full: {'PASS' if middle and max(middle) - min(middle) < 20 else 'CHECK'})",
    ]
    return lines


def _metric(text: str, pattern: str) -> float:
    found = re.search(pattern + r" ([0-9.e+-]+)", text)
    return float(found.group(1)) if found else 0.0


def drift_speed(home: Path, name: str, bundle: Any, work: Path, rows: int) -> list[str]:
    """Write `rows` logged rows × the model's 20 features, then time the whole `layerops drift`."""
    log_dir = work / "drift-log"
    shutil.rmtree(log_dir, ignore_errors=True)
    frame = synthetic_classification(rows, features=20, seed=5).drop(columns=["label"])
    classes = bundle.metadata.classes or ["0", "1"]
    rng = np.random.default_rng(5)
    proba = rng.uniform(size=rows)
    version = int(bundle_version(home, name))
    store = ParquetStore(log_dir)
    started = time.perf_counter()
    now = time.time()
    step = 200_000
    for start in range(0, rows, step):
        part = frame.iloc[start : start + step]
        n = len(part)
        times = (now - 3600 + np.arange(start, start + n) * (3600 / rows)) * 1e6
        columns: dict[str, Any] = {
            "request_id": pa.array([f"r{i}" for i in range(start, start + n)], pa.string()),
            "row": pa.array(np.zeros(n, dtype=np.int32)),
            "time": pa.array(times.astype(np.int64), pa.timestamp("us", tz="UTC")),
            "model": pa.array([name] * n, pa.string()),
            "version": pa.array(np.full(n, version, dtype=np.int32)),
            "variant": pa.nulls(n, pa.string()),
            "latency_ms": pa.array(np.full(n, 0.4)),
            "prediction": pa.array([classes[int(p > 0.5)] for p in proba[start : start + n]], pa.string()),
            f"proba.{classes[0]}": pa.array(1 - proba[start : start + n]),
            f"proba.{classes[1]}": pa.array(proba[start : start + n]),
        }
        for column in part.columns:
            columns[f"input.{column}"] = pa.array(part[column].to_numpy(dtype=np.float64))
        store.write(name, pa.table(columns))
    store.close()
    written = time.perf_counter() - started
    report = work / "drift.html"
    base = [str(BIN / "layerops"), "--home", str(home), "drift", name, "--log", str(log_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYEROPS_")}

    def timed(argv: list[str]) -> list[float]:
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
            seconds.append(time.perf_counter() - started)
            if result.returncode not in (0, 3):
                raise SystemExit(f"layerops drift failed ({result.returncode}): {result.stderr[-2000:]}")
        return seconds

    plain = timed(base)
    timings = timed([*base, "--json", "--html", str(report)])
    import io

    buffer = io.BytesIO()
    bundle.reference.to_parquet(buffer, index=False, compression="zstd")
    sample = f"reference sample {len(bundle.reference):,} rows × {bundle.reference.shape[1]} features, " + (
        f"{buffer.tell() / 1024:.0f} KiB reference.parquet"
    )
    size = sum(p.stat().st_size for p in log_dir.rglob("*.parquet")) / 2**20
    return [
        f"Drift on {rows:,} logged rows × 20 features ({size:.0f} MiB of Parquet, written in "
        f"{written:.1f} s): `layerops drift` took {', '.join(f'{t:.2f}' for t in plain)} s (median "
        f"{statistics.median(plain):.2f} s; goal < 10 s: "
        f"{'PASS' if statistics.median(plain) < 10 else 'MISS'}); "
        f"with `--json --html` {', '.join(f'{t:.2f}' for t in timings)} s (median "
        f"{statistics.median(timings):.2f} s); report {report.stat().st_size / 1024:.0f} KiB; {sample}",
    ]


def bundle_version(home: Path, name: str) -> int:
    from layerops.repository.factory import open_repository
    from layerops.settings import Settings

    return open_repository(Settings(home=home)).resolve_alias(name, "production").version


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, alternated")
    parser.add_argument("--down-seconds", type=float, default=60.0)
    parser.add_argument("--drift-rows", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the model's training set")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "layerops-bench-serve")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    parser.add_argument("--only", nargs="+", default=["overhead", "down", "drift"])
    args = parser.parse_args()
    if shutil.which("wrk") is None and {"overhead", "down"} & set(args.only):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    for key in [k for k in env if k.startswith(("LAYEROPS_", "MLFLOW_"))]:
        del env[key]
    models = prepare_models(args.home, args.rows, env, mlflow_model=False)
    model = models[REFERENCE_MODEL.name]
    work = Path(tempfile.mkdtemp(prefix="layerops-bench-log-"))
    bodies = write_bodies(work, models["data"])
    lines = [f"# Prediction log benchmark ({psutil.cpu_count()} cores, model {model['name']})", ""]
    if "overhead" in args.only:
        lines += [*overhead(args, args.home, model["name"], bodies, env, work), ""]
    if "down" in args.only:
        lines += [*store_down(args, args.home, model["name"], bodies, env, work), ""]
    if "drift" in args.only:
        lines += drift_speed(args.home, model["name"], model["bundle"], work, args.drift_rows)
    print("\n".join(lines))
    print(f"\n_work files in {work}_")


if __name__ == "__main__":
    main()
