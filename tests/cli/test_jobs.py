"""`--jobs`/`jobs=`: every model and every native thread pool trains on at most that many threads."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_info

import layerops
from layerops.training.candidates import make_estimator
from layerops.training.cores import available_cores
from layerops.training.pipeline import SilentReporter


class PoolSizes(SilentReporter):
    """Records the largest native thread pool (BLAS, OpenMP) seen at each stage of a training."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def stage(self, message: str) -> None:
        self.sizes.append(max(int(pool["num_threads"]) for pool in threadpool_info()))


def test_the_default_is_the_cpu_affinity_not_the_machine() -> None:
    assert available_cores() == len(os.sched_getaffinity(0))
    for name in ("random_forest", "xgboost", "lightgbm"):
        assert make_estimator(name, "classification", {}, seed=0).get_params()["n_jobs"] == available_cores()
        assert make_estimator(name, "classification", {}, seed=0, jobs=3).get_params()["n_jobs"] == 3
        spec_says = make_estimator(name, "regression", {"n_jobs": 5}, seed=0, jobs=3)
        assert spec_says.get_params()["n_jobs"] == 5  # the spec's own n_jobs wins


@pytest.mark.parametrize("jobs", [1, 2])
def test_training_limits_the_native_thread_pools(registry: Path, tmp_path: Path, jobs: int) -> None:
    frame = pd.read_csv(registry / "data.csv")
    reporter = PoolSizes()
    spec = {
        "name": "pools",
        "target": "species",
        "candidates": [{"name": "linear"}, {"name": "random_forest", "params": {"n_estimators": 20}}],
        "tuning": {"trials": 1},
        "cleaning": {"collinearity_threshold": None},
    }
    result = layerops.train(spec, data=frame, register=False, reporter=reporter, jobs=jobs)
    assert result.winner in {"linear", "random_forest"}
    assert reporter.sizes and max(reporter.sizes) <= jobs
    assert max(int(pool["num_threads"]) for pool in threadpool_info()) >= 1  # restored afterwards


def test_jobs_below_one_is_a_usage_error(registry: Path) -> None:
    from tests.cli.conftest import layerops as run_layerops

    result = run_layerops("--home", "home", "train", "spec.yaml", "--jobs", "0", cwd=registry)
    assert result.returncode == 2 and "--jobs" in result.stderr


def test_openmp_threads_wait_passively_unless_the_user_says_otherwise() -> None:
    import subprocess
    import sys

    from tests.cli.conftest import environment

    code = "import os, layerops.training.pipeline; print(os.environ['OMP_WAIT_POLICY'])"
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        env = environment()
        env.pop("OMP_WAIT_POLICY", None)
        if given is not None:
            env["OMP_WAIT_POLICY"] = given
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected
