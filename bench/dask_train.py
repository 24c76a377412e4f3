"""Wall time of one training in this process beside the same training on a local Dask cluster.

Same spec, seed and data (scikit-learn's shipped breast_cancer: 569 rows × 30 features, so trials
are scored by 5-fold CV × 2 repeats) and four candidates (linear, decision_tree, xgboost, lightgbm)
of `--trials` trials each. Under 2,000,000 cells XGBoost and LightGBM fit on one thread, so in one
process the candidates run one after another on one core each; with `--dask local:N` each
candidate's study is a task on one of N worker processes. The Dask time includes starting and
stopping the cluster and the workers' imports. Nothing is registered (`register=False`).

Printed: both wall times (each the median of `--repeats` runs, in-process first), the ratio
(Dask ÷ in-process, below 1 is faster), whether the leaderboards are identical (candidate order,
winner, every trial's parameters and score, validation and test metrics, predictions; the script
fails, exit 1, if they are not) and each candidate's tuning + fit seconds both ways: the Dask run
lasts about the longest chain of candidates one worker ran, plus starting the cluster.

    uv run --frozen python bench/dask_train.py [--trials 20] [--workers 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer

import layerops
from layerops.api.training import TrainResult


def spec(trials: int) -> dict[str, Any]:
    """Four candidates, `trials` trials each, seed 42."""
    names = ["linear", "decision_tree", "xgboost", "lightgbm"]
    return {
        "name": "bench_dask",
        "target": "target",
        "task": "classification",
        "seed": 42,
        "candidates": [{"name": name} for name in names],
        "tuning": {"trials": trials},
    }


def timed(trials: int, dask: str | None) -> tuple[float, TrainResult]:
    """One training's wall seconds and result."""
    frame = load_breast_cancer(as_frame=True).frame
    start = time.perf_counter()
    result = layerops.train(spec(trials), data=frame, register=False, dask=dask)
    return time.perf_counter() - start, result


def differences(alone: TrainResult, on_dask: TrainResult) -> list[str]:
    """What differs between two leaderboards (empty: identical)."""
    assert alone.details is not None and on_dask.details is not None
    a, b = alone.details.leaderboard, on_dask.details.leaderboard
    found = []
    if [o.name for o in a] != [o.name for o in b]:
        found.append(f"order: {[o.name for o in a]} vs {[o.name for o in b]}")
    if alone.winner != on_dask.winner:
        found.append(f"winner: {alone.winner} vs {on_dask.winner}")
    for x, y in zip(a, b, strict=True):
        for field in ("params", "trials", "validation", "validation_std", "test"):
            if getattr(x, field) != getattr(y, field):
                found.append(f"{x.name}: {field}")
        for field in ("val_outputs", "test_outputs"):
            for u, v in zip(getattr(x, field), getattr(y, field), strict=True):
                if (u is None) != (v is None) or (u is not None and not np.array_equal(u, v)):
                    found.append(f"{x.name}: {field}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import lightgbm  # noqa: F401 - imported before timing, as a warm process has them
    import xgboost  # noqa: F401

    dask = f"local:{args.workers}"
    alone_times, dask_times = [], []
    for _ in range(args.repeats):
        seconds, alone = timed(args.trials, None)
        alone_times.append(seconds)
        seconds, on_dask = timed(args.trials, dask)
        dask_times.append(seconds)
        found = differences(alone, on_dask)
        if found:
            print("leaderboards differ:", "; ".join(found), file=sys.stderr)
            return 1
    local, remote = statistics.median(alone_times), statistics.median(dask_times)
    board = ", ".join(f"{o.name} {o.validation['f1_macro']:.4f}" for o in alone.details.leaderboard)  # type: ignore[union-attr]
    print(f"4 candidates × {args.trials} trials, breast_cancer, 5-fold CV × 2; leaderboard: {board}")
    print(f"in-process:       {local:7.2f} s wall  (runs: {', '.join(f'{t:.2f}' for t in alone_times)})")
    print(f"--dask {dask}:   {remote:7.2f} s wall  (runs: {', '.join(f'{t:.2f}' for t in dask_times)})")
    print(f"ratio dask / in-process: {remote / local:.2f}; leaderboards identical: yes")
    fits = [(o.name, o.resources["wall_seconds"]) for o in alone.details.leaderboard]  # type: ignore[union-attr]
    spread = {o.name: o.resources["wall_seconds"] for o in on_dask.details.leaderboard}  # type: ignore[union-attr]
    print("tuning + fit seconds per candidate, in-process / on a worker (last run): ", end="")
    print(", ".join(f"{name} {seconds:.1f} / {spread[name]:.1f}" for name, seconds in fits))
    return 0


if __name__ == "__main__":  # the cluster's worker processes import this file again (spawn)
    sys.exit(main())
