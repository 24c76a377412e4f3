"""Many processes writing one model through the tracking server at once: eight trainings that each
register a version (and move the `candidate` alias), then eight `layerops models promote` of one
alias. Every version must exist exactly once with its own run and its own verified artifacts, and
every alias must stand where its history's last entry says, with every move recorded once."""

from __future__ import annotations

import multiprocessing
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import pytest

from layerops.repository.mlflow_repo import DIGEST_TAG, MlflowRepository
from tests.production.stack import BIN, PROXIED_PREFIX, S3Store, TrackingServer, clean_environment

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WRITERS = 8
MODEL = "crowd"


@dataclass(frozen=True)
class Trained:
    """What one training process registered."""

    seed: int
    version: int
    run_id: str


def _train(seed: int, tracking_uri: str, home: str, results: Queue[Any]) -> None:
    """One training process: a small tree on iris with its own seed, registered as `candidate`."""
    try:
        import layerops
        from layerops.datasets import iris

        spec = {
            "name": MODEL,
            "target": "species",
            "seed": seed,
            "cleaning": {"collinearity_threshold": None},
            "candidates": [{"name": "decision_tree", "params": {"max_depth": 1 + seed % 3}}],
            "tuning": {"trials": 1, "cv_folds": 0},
        }
        result = layerops.train(
            spec, data=iris(), alias="candidate", home=home, tracking_uri=tracking_uri, jobs=1
        )
        assert result.registered is not None and result.registered.run_id is not None
        results.put(Trained(seed, result.registered.version, result.registered.run_id))
    except BaseException as exc:
        results.put(f"training with seed {seed} failed: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def trained(server: TrackingServer, tmp_path_factory: pytest.TempPathFactory) -> list[Trained]:
    """Eight training processes started together against the server, each with its own home."""
    # The server fixture imported what the trainers need (conftest.PRELOAD) before this fork.
    context = multiprocessing.get_context("fork")
    results: Queue[Any] = context.Queue()
    homes = tmp_path_factory.mktemp("trainers")
    processes = [
        context.Process(target=_train, args=(seed, server.url, str(homes / f"home{seed}"), results))
        for seed in range(1, WRITERS + 1)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(60)
    failures = [o for o in outcomes if not isinstance(o, Trained)]
    assert not failures, failures
    return sorted(outcomes, key=lambda t: t.version)


def test_concurrent_trainings_register_every_version_once_with_its_own_verified_artifacts(
    trained: list[Trained], server: TrackingServer, s3_store: S3Store, tmp_path: Path
) -> None:
    repository = MlflowRepository(server.url, cache_dir=tmp_path / "cache")

    versions = sorted(repository.list_versions(MODEL), key=lambda v: v.version)

    assert [t.version for t in trained] == list(range(1, WRITERS + 1))
    assert [v.version for v in versions] == list(range(1, WRITERS + 1))
    assert [v.run_id for v in versions] == [t.run_id for t in trained]
    assert len({t.run_id for t in trained}) == WRITERS
    manifests = s3_store.keys(f"{PROXIED_PREFIX}/")
    for entry, origin in zip(versions, trained, strict=True):
        # Downloaded through the server into an empty cache: load_bundle checks every file's hash
        # and the manifest against the version's digest tag.
        bundle = repository.load_bundle(MODEL, entry.version, native=False)
        assert bundle.metadata.lineage.seed == origin.seed
        assert entry.tags["layerops.seed"] == str(origin.seed)
        (manifest,) = [
            k for k in manifests if k.endswith(f"/{origin.run_id}/artifacts/model/bundle/manifest.json")
        ]
        assert s3_store.sha256(manifest) == entry.tags[DIGEST_TAG]
    _assert_settled(repository, "candidate", expected=set(range(1, WRITERS + 1)))


def test_concurrent_promotions_of_one_alias_are_each_recorded_and_the_last_entry_wins(
    trained: list[Trained], server: TrackingServer, tmp_path: Path
) -> None:
    client = clean_environment(LAYEROPS_TRACKING_URI=server.url, LAYEROPS_HOME=str(tmp_path / "home"))

    def promote(version: int) -> subprocess.CompletedProcess[str]:
        command = [str(BIN / "layerops"), "models", "promote", MODEL, "--version", str(version), "--no-gate"]
        return subprocess.run(
            command, cwd=tmp_path, env=client, capture_output=True, text=True, timeout=300, check=False
        )

    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(promote, [t.version for t in trained]))

    assert [r.returncode for r in results] == [0] * WRITERS, [r.stderr for r in results]
    repository = MlflowRepository(server.url)
    last = _assert_settled(repository, "production", expected={t.version for t in trained})
    # The history and the alias agree, so a rollback is not refused as "moved outside layerops":
    # it goes to the entry before the last.
    before = [c.version for c in repository.history(MODEL) if c.alias == "production"][-2]
    change = repository.rollback(MODEL, "production", reason="concurrency test")
    assert (change.previous, change.version) == (last, before)
    assert repository.resolve_alias(MODEL, "production").version == before


def _assert_settled(repository: MlflowRepository, alias: str, *, expected: set[int]) -> int:
    """The alias's history holds one entry per expected version and the alias stands on the last
    entry's version (the last writer, as the history orders them); returns that version."""
    changes = [c for c in repository.history(MODEL) if c.alias == alias]
    assert sorted(c.version for c in changes if c.version is not None) == sorted(expected)
    assert all(c.previous is None or c.previous in expected for c in changes)
    last = changes[-1].version
    assert last is not None
    assert repository.resolve_alias(MODEL, alias).version == last
    return last
