"""A/B of `layerops serve` between two checkouts: the same model, the same machine, alternating.

A refactoring of the serving path must not cost speed. This runs the reference model of
`bench/serve.py` (100-tree forest, ONNX) on two builds of layerops — `--before`, a checkout with
its own `.venv` (e.g. `git worktree add /tmp/before <commit> && make -C /tmp/before env`), and
this checkout — in alternating rounds (A B A B ...), so drift of the machine over the run hits
both sides alike. Each round measures single-row latency at 1 connection, throughput at 16 and 64
connections and one 10,000-row request at a time; the report gives each side's median over the
rounds and after ÷ before.

    .venv/bin/python bench/ab_serve.py --before /tmp/before [--rounds 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import serve as serve_bench
from serve import (  # bench/ is this script's path
    API_KEY,
    BIN,
    REFERENCE_MODEL,
    Load,
    ServerResult,
    Target,
    machine,
    measure,
    prepare_models,
    write_bodies,
)

SCENARIOS = {"c1": ("single", 1), "c16": ("single", 16), "c64": ("single", 64), "batch": ("batch", 1)}
COLUMNS = [
    ("1 conn p50 ms", "c1", "p50_ms", False),
    ("16 conn req/s", "c16", "rps", True),
    ("16 conn p99 ms", "c16", "p99_ms", False),
    ("64 conn req/s", "c64", "rps", True),
    ("64 conn p99 ms", "c64", "p99_ms", False),
    ("10k-row req/s", "batch", "rps", True),
]


def _value(result: ServerResult, scenario: str, attr: str) -> float | None:
    load: Load | None = result.loads.get(scenario)
    return None if load is None or load.errors else float(getattr(load, attr))


def report(sides: dict[str, list[ServerResult]]) -> str:
    """Per round and median rows for each side, then after ÷ before (> 1: after is better)."""
    header = "| side | round | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [header, "|---|--:|" + "--:|" * len(COLUMNS)]
    medians: dict[str, list[float | None]] = {}
    for side, results in sides.items():
        for index, result in enumerate(results, 1):
            cells = [_value(result, scenario, attr) for _, scenario, attr, _ in COLUMNS]
            shown = ["–" if v is None else f"{v:,.2f}" for v in cells]
            lines.append(
                f"| {side} | {index}{' ' + result.error if result.error else ''} | "
                + " | ".join(shown)
                + " |"
            )
        medians[side] = []
        for _, scenario, attr, _ in COLUMNS:
            values = [v for r in results if (v := _value(r, scenario, attr)) is not None]
            medians[side].append(statistics.median(values) if values else None)
        shown = ["–" if v is None else f"**{v:,.2f}**" for v in medians[side]]
        lines.append(f"| {side} | median | " + " | ".join(shown) + " |")
    ratios = []
    for (_, _, _, higher_better), before, after in zip(
        COLUMNS, medians["before"], medians["after"], strict=True
    ):
        if before is None or after is None or not before or not after:
            ratios.append("–")
        else:
            ratios.append(f"{(after / before) if higher_better else (before / after):.3f}")
    lines.append("| after ÷ before | (> 1 better) | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--before", type=Path, required=True, help="checkout whose .venv/bin/layerops is 'before'"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the generated training set")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "layerops-bench-ab")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--retries", type=int, default=2, help="re-runs of a run disturbed by other work")
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on CPU 0, wrk on CPU 1 (taskset): less spread between rounds",
    )
    args = parser.parse_args()
    before_bin = args.before.resolve() / ".venv" / "bin" / "layerops"
    if not before_bin.exists():
        sys.exit(f"{before_bin} is missing: run `make env` in {args.before}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    for key in [k for k in env if k.startswith(("LAYEROPS_", "MLFLOW_"))]:
        del env[key]
    started = time.perf_counter()
    models = prepare_models(args.home, args.rows, env, bin_dir=before_bin.parent, mlflow_model=False)
    ref = models[REFERENCE_MODEL.name]
    work = Path(tempfile.mkdtemp(prefix="layerops-bench-ab-"))
    bodies = write_bodies(work, models["data"])

    pin_server = ["taskset", "-c", "0"] if args.pin else []
    if args.pin:
        serve_bench.WRK_PREFIX[:] = ["taskset", "-c", "1"]

    def target(layerops: Path) -> Target:
        argv = [
            *pin_server, str(layerops), "--home", str(args.home), "serve",
            "--model", f"{ref['name']}@production", "--port", "{port}", "--workers", "1",
        ]  # fmt: skip
        return Target(
            "layerops", argv, {**env, "LAYEROPS_API_KEYS": API_KEY}, f"/models/{ref['name']}/predict",
            bodies["rows_1"], bodies["rows_batch"], {"X-API-Key": API_KEY},
        )  # fmt: skip

    builds = {"before": target(before_bin), "after": target(BIN / "layerops")}
    sides: dict[str, list[ServerResult]] = {"before": [], "after": []}
    for round_index in range(args.rounds):
        order = list(builds) if round_index % 2 == 0 else list(reversed(builds))
        for side in order:
            sides[side].append(
                measure(builds[side], 1, SCENARIOS, args, work, note=f"{side} round {round_index + 1}")
            )
    print(f"`bench/ab_serve.py --before {args.before} --rounds {args.rounds} --duration {args.duration:g}`")
    print(f"on {machine()}\n")
    print(report(sides))
    print(f"\n_Total run time {time.perf_counter() - started:.0f} s; server logs in {work}._")


if __name__ == "__main__":
    main()
