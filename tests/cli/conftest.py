"""A small trained registry shared by the command-line tests, and a way to run `layerops` for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

LAYEROPS = Path(sys.executable).parent / "layerops"
"""The console script installed in this environment."""

SPEC = """
name: iris
description: Iris species for the CLI tests
data: {path: data.csv}
target: species
cleaning: {collinearity_threshold: null}
candidates:
  - name: baseline
  - name: decision_tree
    params: {max_depth: 3}
tuning: {trials: 1}
"""


def environment(**extra: str) -> dict[str, str]:
    """This environment without LAYEROPS_* variables (the tests name their home), plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAYEROPS_")}
    return {**env, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra}


def layerops(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `layerops` command (the console script's `run()`) in a fresh process."""
    command = [str(LAYEROPS), *args]
    return subprocess.run(
        command, cwd=cwd, env=environment(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="package")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git work tree with spec.yaml and data.csv committed, and home/ (ignored): iris v1 and v2,
    production moved v1 → v2 → v1."""
    from sklearn.datasets import load_iris

    import layerops

    folder = tmp_path_factory.mktemp("cli-registry")
    data = load_iris(as_frame=True)
    frame: pd.DataFrame = data.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = [str(data.target_names[i]) for i in frame.pop("target")]
    frame.to_csv(folder / "data.csv", index=False)
    (folder / "spec.yaml").write_text(SPEC, encoding="utf-8")
    (folder / ".gitignore").write_text("home/\n", encoding="utf-8")
    for git in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "spec and data"]):
        identity = ["-c", "user.email=t@example.org", "-c", "user.name=t"]
        subprocess.run(["git", "-C", str(folder), *identity, *git], check=True, capture_output=True)
    home = folder / "home"
    layerops.train(folder / "spec.yaml", alias="production", home=home)
    layerops.train(folder / "spec.yaml", home=home)
    layerops.models.promote("iris", version=2, home=home)
    layerops.models.rollback("iris", reason="canary failed", home=home)
    return folder
