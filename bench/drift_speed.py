"""Wall time of a drift check on 1,000,000 logged rows × 20 features, reading excluded.

Builds a deterministic classifier bundle's metadata (15 numeric and 5 categorical features, a
reference profile and a 5,000-row reference sample) and a current log frame in the layout of
`layerops.monitoring.records`, half of it shifted, then times
`DriftDetector().fit(metadata, reference).score(log, slices=10)`.

    uv run python bench/drift_speed.py [--rows 1000000] [--repeats 3]

Goal: under 9 s (the `layerops drift` budget of 10 s less about 1 s of reading); CPU seconds are
printed beside the wall time, since on a machine others load the wall time stretches.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from layerops.bundle import BundleMetadata, Lineage
from layerops.bundle.profile import build_profile, infer_schema, reference_sample
from layerops.monitoring.drift import DriftDetector
from layerops.monitoring.records import input_column, proba_column

NUMERIC = 15
CATEGORICAL = 5
CLASSES = ["a", "b", "c"]
LEVELS = np.array(["red", "green", "blue", "amber", "violet", "grey"], dtype=object)


def features(rows: int, rng: np.random.Generator, *, shift: float) -> pd.DataFrame:
    """`rows` rows of the synthetic features, numeric ones moved by `shift` standard deviations."""
    columns: dict[str, object] = {f"x{i}": rng.normal(shift, 1.0 + i / 10, rows) for i in range(NUMERIC)}
    weights = np.linspace(1.0, 2.0, LEVELS.size) if shift else np.ones(LEVELS.size)
    for i in range(CATEGORICAL):
        columns[f"c{i}"] = rng.choice(LEVELS, rows, p=weights / weights.sum())
    return pd.DataFrame(columns)


def bundle(rng: np.random.Generator) -> tuple[BundleMetadata, pd.DataFrame]:
    """Metadata with a reference profile of 20,000 training rows, and their reference sample."""
    train = features(20_000, rng, shift=0.0)
    schema = infer_schema(train)
    predictions = rng.integers(0, len(CLASSES), len(train))
    profile = build_profile(train, schema, predictions, task="classification", classes=CLASSES)
    metadata = BundleMetadata(
        name="bench",
        task="classification",
        target="y",
        classes=CLASSES,
        features=schema,
        candidate="none",
        metrics={"test": {"accuracy": 0.9}},
        lineage=Lineage(dataset_sha256="0", spec_sha256="0", seed=0),
        reference_profile=profile,
        created_at="2026-12-01T00:00:00+00:00",
    )
    return metadata, reference_sample(train, schema)


def log(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """A current log frame of `rows` rows over one day, the second half shifted by 0.5 std."""
    half = rows // 2
    inputs = pd.concat([features(half, rng, shift=0.0), features(rows - half, rng, shift=0.5)])
    frame = inputs.rename(columns=input_column).reset_index(drop=True)
    for i in range(NUMERIC):  # ~1% missing, as a real log has
        frame.loc[rng.choice(rows, rows // 100, replace=False), input_column(f"x{i}")] = np.nan
    proba = rng.dirichlet(np.ones(len(CLASSES)), rows)
    for j, label in enumerate(CLASSES):
        frame[proba_column(label)] = proba[:, j]
    frame["prediction"] = np.array(CLASSES, dtype=object)[proba.argmax(axis=1)]
    start = pd.Timestamp("2026-12-02", tz="UTC")
    frame["time"] = start + pd.to_timedelta(np.sort(rng.uniform(0, 86_400, rows)), unit="s")
    frame["version"] = np.int32(1)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(12)
    metadata, reference = bundle(rng)
    current = log(args.rows, rng)
    print(f"log: {len(current):,} rows × {NUMERIC + CATEGORICAL} features (+ prediction)")
    for repeat in range(args.repeats):
        wall, cpu = time.perf_counter(), os.times()
        report = DriftDetector().fit(metadata, reference, version=1).score(current, slices=10)
        used = os.times()
        seconds = time.perf_counter() - wall
        cpu_seconds = (used.user - cpu.user) + (used.system - cpu.system)
        drifted = len(report.drifted_features())
        late = len(report.timeline[-1].drifted)
        print(
            f"run {repeat + 1}: {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU; drifted: {drifted} over the "
            f"window, {late} in its last slice"
        )


if __name__ == "__main__":
    main()
