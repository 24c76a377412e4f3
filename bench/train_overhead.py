"""Wall time of `layerops train` (one random-forest candidate) beside a bare scikit-learn script.

Both run as fresh processes on the same generated data set (200,000 rows × 20 features by
default), fit the same forest on the same train split, score it on the validation split and
refit it on train + validation (what layerops registers); layerops also validates, cleans,
measures latency, exports and checks ONNX, profiles the data, logs to MLflow and registers.

    uv run python bench/train_overhead.py [--rows 200000] [--trees 100] [--repeats 1]

Goal: layerops' overhead under 10% plus 3 s (wall). CPU seconds (user + system, threads and
child processes included) are printed beside the wall times: on a machine others load, the wall
times stretch but the CPU seconds still compare the work each side does.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from layerops.datasets import synthetic_classification

BARE = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.read_csv(sys.argv[1])
    y = frame.pop("label").to_numpy()
    x = frame.astype("float64")
    n = len(x)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=round(n * 0.2), random_state=42, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=round(n * 0.2), random_state=42, stratify=y_rest
    )
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    model = Pipeline([
        ("preprocess", ColumnTransformer([("num", numeric, list(x.columns))])),
        ("model", RandomForestClassifier(
            n_estimators=int(sys.argv[2]), max_depth=int(sys.argv[3]), n_jobs=-1, random_state=42)),
    ])
    model.fit(x_train, y_train)
    print("val accuracy", (model.predict(x_val) == y_val).mean())
    model.fit(x_rest, y_rest)  # the careful user's final model: refitted on train + validation
    print("test accuracy", (model.predict(x_test) == y_test).mean())
    """
)

SPEC = """
name: {name}
data: {{path: {data}}}
target: label
task: classification
cleaning: {{outliers: {{method: none}}, collinearity_threshold: null, drop_duplicates: true}}
candidates:
  - name: random_forest
    params: {{n_estimators: {trees}, max_depth: {depth}, min_samples_leaf: 1}}
selection: {{metric: accuracy}}
"""


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the process and its children) of one run."""
    start, cpu = time.perf_counter(), _cpu_children()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, _cpu_children() - cpu


def main() -> None:
    """Run both, print the wall times, the overhead and the ratio."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="layerops-bench-") as tmp:
        folder = Path(tmp)
        data = folder / "data.csv"
        synthetic_classification(args.rows, features=20, seed=0).to_csv(data, index=False)
        spec = folder / "spec.yaml"
        spec.write_text(SPEC.format(name="bench_forest", data=data, trees=args.trees, depth=args.depth))
        bare = folder / "bare.py"
        bare.write_text(BARE)
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        bare_times: list[tuple[float, float]] = []
        layerops_times: list[tuple[float, float]] = []
        for i in range(args.repeats):
            bare_cmd = [sys.executable, str(bare), str(data), str(args.trees), str(args.depth)]
            bare_times.append(_timed(bare_cmd, env))
            home = folder / f"home{i}"
            layerops_cmd = [str(bin_dir / "layerops"), "--home", str(home), "train", str(spec), "--quiet"]
            layerops_times.append(_timed(layerops_cmd, env))
    bare_s, bare_cpu = (statistics.median(t) for t in zip(*bare_times, strict=True))
    ours_s, ours_cpu = (statistics.median(t) for t in zip(*layerops_times, strict=True))
    budget = bare_s * 1.10 + 3.0
    print(
        f"data set: {args.rows:,} rows × 20 features; "
        f"random forest {args.trees} trees, max_depth {args.depth}"
    )
    print("                           wall s     CPU s")
    print(f"bare scikit-learn script : {bare_s:8.2f}  {bare_cpu:8.2f}")
    print(f"layerops train           : {ours_s:8.2f}  {ours_cpu:8.2f}")
    print(
        f"overhead                 : {ours_s - bare_s:8.2f}  {ours_cpu - bare_cpu:8.2f}  "
        f"(ratio {ours_s / bare_s:.3f}× wall, {ours_cpu / bare_cpu:.3f}× CPU)"
    )
    print(f"goal (bare × 1.10 + 3 s) : {budget:8.2f}            -> {'met' if ours_s <= budget else 'MISSED'}")


if __name__ == "__main__":
    main()
