"""How fast the CLI answers: `layerops --help`, a spec error, and `models list` on a small registry.

Each command runs in a fresh interpreter, with and without byte-code caches, and the median wall
and CPU (user + system, from `wait4`) seconds over `--repeat` runs are printed as a table.

- "cached": a private `PYTHONPYCACHEPREFIX` warmed by one unmeasured run of the same command;
- "no cache": `PYTHONDONTWRITEBYTECODE=1` and an empty `PYTHONPYCACHEPREFIX`, as on a fresh
  clone whose installer did not precompile (every module compiled from source, every run).

`--before DIR` measures the checkout in DIR too (its `src` first on `PYTHONPATH`, this
environment's dependencies), e.g. `git worktree add /tmp/before main`.

    uv run --frozen python bench/cli_startup.py [--repeat 5] [--before /tmp/before]

Figures on a shared machine are indicative.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "from layerops.cli.main import run; run()"

SPEC = """
name: iris
data: {path: data.csv}
target: species
cleaning: {collinearity_threshold: null}
candidates: [{name: baseline}]
tuning: {trials: 1}
"""
BAD_SPEC = "name: iris\ndata: {path: data.csv}\ntarget: species\ncandidates: [{name: svm}]\n"


def run_once(src: Path, args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and exit code of one `layerops ARGS` from `src`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(src)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, process.returncode


def measure(
    src: Path, args: list[str], cwd: Path, *, cached: bool, repeat: int, scratch: Path
) -> tuple[float, float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAYEROPS_", "PYTHON"))}
    env["COLUMNS"] = "100"
    prefix = Path(tempfile.mkdtemp(prefix="pycache-", dir=scratch))
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    if cached:
        run_once(src, args, cwd, env)  # writes every module's byte code into the prefix
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the prefix stays empty: compiled from source each run
    runs = [run_once(src, args, cwd, env) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[-1][2]


def small_registry(folder: Path) -> None:
    """data.csv, spec.yaml, bad.yaml and home/ with one registered model (trained by this build)."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
    frame.columns = [str(c).replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    frame.to_csv(folder / "data.csv", index=False)
    (folder / "spec.yaml").write_text(SPEC, encoding="utf-8")
    (folder / "bad.yaml").write_text(BAD_SPEC, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYEROPS_")}
    subprocess.run(
        [sys.executable, "-c", ENTRY, "--home", "home", "train", "spec.yaml", "-q"],
        cwd=folder,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per cell (median)")
    parser.add_argument("--before", type=Path, help="another checkout to measure the same way")
    options = parser.parse_args()
    builds = [("this", ROOT / "src")]
    if options.before is not None:
        builds.append(("before", options.before.resolve() / "src"))
    commands = {
        "--help": ["--help"],
        "spec error": ["train", "bad.yaml"],
        "models list": ["--home", "home", "models", "list"],
    }
    with tempfile.TemporaryDirectory(prefix="layerops-cli-bench-") as tmp:
        folder = Path(tmp)
        small_registry(folder)
        print(f"{'build':<8} {'command':<12} {'caches':<9} {'wall s':>7} {'CPU s':>7} {'exit':>5}")
        for build, src in builds:
            for label, args in commands.items():
                for cached in (True, False):
                    wall, cpu, code = measure(
                        src, args, folder, cached=cached, repeat=options.repeat, scratch=folder
                    )
                    caches = "cached" if cached else "no cache"
                    print(
                        f"{build:<8} {label:<12} {caches:<9} {wall:>7.2f} {cpu:>7.2f} {code:>5}", flush=True
                    )


if __name__ == "__main__":
    main()
