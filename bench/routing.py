"""The cost of traffic routing on serving: a policy with one variant vs no policy.

On the serving benchmark's reference model (a 100-tree forest on 20 features, trained or reused by
`bench/serve.py`'s `prepare_models`): `layerops serve` without a traffic file and with one giving
the model a policy of one variant (sticky by a header, so every request is hashed and routed),
alternated over `--rounds` rounds so drift in the machine's speed hits both; wrk at 16
connections (throughput) and 1 (single-row p50). The prediction log is off in both, so only
routing differs. Goal: throughput with the policy ≥ 0.97× without.

    .venv/bin/python bench/routing.py [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import psutil
from serve import (  # the serving benchmark's helpers (bench/ is this script's path)
    API_KEY,
    BIN,
    REFERENCE_MODEL,
    Load,
    Target,
    measure,
    prepare_models,
    write_bodies,
)


def _target(
    home: Path, name: str, bodies: dict[str, Path], env: dict[str, str], traffic: Path | None
) -> Target:
    argv = [
        str(BIN / "layerops"), "--home", str(home), "serve",
        "--model", f"{name}@production", "--port", "{port}",
    ]  # fmt: skip
    extra = {
        "LAYEROPS_API_KEYS": API_KEY,
        "LAYEROPS_PREDICTION_LOG": "off",
        "LAYEROPS_DRIFT_INTERVAL_SECONDS": "0",
    }
    if traffic is not None:
        extra["LAYEROPS_TRAFFIC_FILE"] = str(traffic)
    headers = {"X-API-Key": API_KEY, "X-User-Id": "bench-user-17"}
    return Target(
        f"layerops policy={'on' if traffic else 'off'}", argv, {**env, **extra}, f"/models/{name}/predict",
        bodies["rows_1"], bodies["rows_batch"], headers,
    )  # fmt: skip


def overhead(
    args: argparse.Namespace, home: Path, name: str, bodies: dict[str, Path], env: dict[str, str], work: Path
) -> list[str]:
    """No policy vs a one-variant policy, alternated; the medians and the goal."""
    traffic = work / "traffic.yaml"
    traffic.write_text(f"models:\n  {name}:\n    sticky: {{header: X-User-Id}}\n", encoding="utf-8")
    runs: dict[str, list[Load]] = {"off": [], "on": []}
    single: dict[str, list[Load]] = {"off": [], "on": []}
    for round_ in range(args.rounds):
        order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
        for mode in order:
            target = _target(home, name, bodies, env, traffic if mode == "on" else None)
            result = measure(target, 1, {"c1": ("single", 1), "c16": ("single", 16)}, args, work)
            if result.error:
                raise SystemExit(f"server failed: {result.error}")
            runs[mode].append(result.loads["c16"])
            single[mode].append(result.loads["c1"])
    rps = {mode: statistics.median(load.rps for load in loads) for mode, loads in runs.items()}
    p50 = {mode: statistics.median(load.p50_ms for load in loads) for mode, loads in single.items()}
    p99 = {mode: statistics.median(load.p99_ms for load in loads) for mode, loads in runs.items()}
    ratio = rps["on"] / rps["off"]
    # each round's pair ran back to back: the median of their ratios is steadier than the ratio of
    # medians when the machine's speed drifts between rounds
    paired = statistics.median(on.rps / off.rps for on, off in zip(runs["on"], runs["off"], strict=True))
    lines = [
        "| traffic policy | c16 req/s | c16 p99 ms | c1 p50 ms |",
        "|---|---:|---:|---:|",
    ]
    for mode in ("off", "on"):
        lines.append(f"| {mode} | {rps[mode]:.0f} | {p99[mode]:.2f} | {p50[mode]:.3f} |")
    lines += [
        "",
        "Per-round c16 req/s: "
        + ", ".join(f"{mode} {[round(load.rps) for load in runs[mode]]}" for mode in ("off", "on")),
        f"Throughput policy on/off at 16 connections: {ratio:.3f} (ratio of medians), "
        f"{paired:.3f} (median of the rounds' ratios; goal ≥ 0.97: {'PASS' if paired >= 0.97 else 'MISS'})",
        f"Single-row p50 moved by {(p50['on'] - p50['off']) * 1000:+.0f} µs",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5, help="off/on pairs, alternated")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the model's training set")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "layerops-bench-serve")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    for key in [k for k in env if k.startswith(("LAYEROPS_", "MLFLOW_"))]:
        del env[key]
    models = prepare_models(args.home, args.rows, env, mlflow_model=False)
    model = models[REFERENCE_MODEL.name]
    work = Path(tempfile.mkdtemp(prefix="layerops-bench-routing-"))
    bodies = write_bodies(work, models["data"])
    lines = [f"# Routing benchmark ({psutil.cpu_count()} cores, model {model['name']})", ""]
    lines += overhead(args, args.home, model["name"], bodies, env, work)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
