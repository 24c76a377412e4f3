"""A small registry for the batch tests: `mixed` v1 (production) and v2, trained once per session.

Its features cover every kind the row checks know: a required and an optional float, an int,
a category and a bool. `rows(...)` makes input frames for it, with bad rows where asked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

LAYEROPS = Path(sys.executable).parent / "layerops"
MODEL = "mixed"
FEATURES = ["x1", "x2", "n", "color", "flag"]
BAD_ROWS = {
    3: ("x1", "abc", "x1: not a number: 'abc'"),
    4: ("color", "purple", "color: unknown category 'purple'; allowed: blue, green, red"),
    5: ("n", 1.5, "n: must be a whole number, got 1.5"),
    6: ("x1", None, "x1: missing; the model requires it"),
    8: ("x1", "inf", "x1: must be a finite number, got inf"),
    9: ("flag", "maybe", "flag: must be a boolean (true/false or 1/0), got 'maybe'"),
}
"""Row → (column, bad value, the reason the rejects must give)."""


def rows(count: int, *, seed: int = 1, bad_every: int | None = None) -> pd.DataFrame:
    """`count` input rows with an `id`; every `bad_every`-th block of 10 rows holds `BAD_ROWS`."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(count),
            "x1": rng.normal(size=count).round(3),
            "x2": rng.normal(size=count).round(3),
            "n": rng.integers(0, 5, count),
            "color": rng.choice(["red", "green", "blue"], count),
            "flag": rng.random(count) < 0.5,
        }
    )
    frame.loc[frame.index % 7 == 0, "x2"] = np.nan  # optional: scored, not rejected
    if bad_every is not None:
        frame = frame.astype(object)
        for start in range(0, count, 10 * bad_every):
            for offset, (column, value, _) in BAD_ROWS.items():
                if start + offset < count:
                    frame.loc[start + offset, column] = value
    return frame


def _train(home: Path) -> None:
    import layerops

    frame = rows(400, seed=0)
    frame["label"] = np.where(frame.x1 + (frame.color == "red") + frame.flag > 0.8, "yes", "no")
    for depth, alias in ((4, "production"), (2, None)):
        spec = {
            "name": MODEL,
            "target": "label",
            "task": "classification",
            "cleaning": {"collinearity_threshold": None},
            "candidates": [{"name": "decision_tree", "params": {"max_depth": depth}}],
            "tuning": {"trials": 1},
        }
        layerops.train(spec, data=frame.drop(columns="id"), alias=alias, home=home)


@pytest.fixture(scope="package")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layerops home with `mixed` v1 (production, depth 4) and v2 (depth 2)."""
    folder = tmp_path_factory.mktemp("batch") / "home"
    _train(folder)
    return folder


def environment(**extra: str) -> dict[str, str]:
    """This environment without LAYEROPS_* variables, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAYEROPS_")}
    return {**env, "COLUMNS": "200", **extra}


def batch_command(home: Path, *args: str) -> list[str]:
    """The `layerops batch-predict` command line on `home`."""
    return [str(LAYEROPS), "--home", str(home), "batch-predict", *args]


def run(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `layerops batch-predict ARGS` in a fresh process."""
    return subprocess.run(
        batch_command(home, *args), cwd=cwd, env=environment(), capture_output=True, text=True, timeout=300
    )
