"""MlflowRepository against a real sqlite MLflow: runs, versions, aliases, rollback, bundles."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from layerops.bundle import ModelBundle
from layerops.errors import BundleError, NotFoundError, RepositoryError, RepositoryUnavailableError
from layerops.repository import ModelRepository, RunInfo, TrainingRun
from layerops.repository.factory import open_repository
from layerops.repository.mlflow_repo import DIGEST_TAG, MlflowRepository, bundle_uri
from layerops.settings import Settings
from tests.bundle.builders import IRIS_FEATURES


def _source_folder(repo: MlflowRepository, name: str, version: int) -> Path:
    """The local bundle folder of a version (inside its file:// source, the MLflow model folder)."""
    return Path(unquote(urlsplit(bundle_uri(repo.get_version(name, version))).path))


def _experiment_location(info: RunInfo, client: MlflowClient) -> str:
    """The experiment's artifact location (under the repository's artifact root)."""
    return str(client.get_experiment(info.experiment_id).artifact_location)


def _registered(repo: MlflowRepository, training_run: TrainingRun, bundle_dir: Path, times: int) -> RunInfo:
    info = repo.log_training(training_run, bundle_dir)
    for _ in range(times):
        repo.register("iris", info)
    return info


def test_log_training_creates_a_parent_and_nested_candidate_runs(
    repo: MlflowRepository, tracking_uri: str, training_run: TrainingRun, bundle_dir: Path
) -> None:
    info = repo.log_training(training_run, bundle_dir)

    client = MlflowClient(tracking_uri)
    parent = client.get_run(info.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"task": "classification", "target": "species", "seed": "7"}
    assert parent.data.tags["layerops.dataset_sha256"] == "0" * 64
    assert parent.data.metrics["val_accuracy"] == 0.96
    assert parent.info.artifact_uri.startswith(_experiment_location(info, client))
    parent_files = {a.path for a in client.list_artifacts(info.run_id)}
    assert parent_files == {"model", "leaderboard.csv"}
    assert {a.path for a in client.list_artifacts(info.run_id, "model/bundle")} == {
        "model/bundle/manifest.json",
        "model/bundle/metadata.json",
        "model/bundle/model.skops",
    }
    assert info.bundle_uri == f"{parent.info.artifact_uri}/model/bundle"

    children = client.search_runs(
        [info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{info.run_id}'"
    )
    by_name = {child.info.run_name: child for child in children}
    assert set(by_name) == {"logistic_regression", "baseline"}
    winner = by_name["logistic_regression"]
    assert winner.info.status == "FINISHED"
    assert winner.data.params == {"C": "1.0"}
    assert winner.data.metrics["test_accuracy"] == 0.95
    assert winner.data.metrics["system/peak_rss_mb"] == 210.5
    assert by_name["baseline"].data.metrics["system/cpu_percent"] == 12.0
    trials_path = client.download_artifacts(winner.info.run_id, "trials.json", str(bundle_dir.parent))
    trials = json.loads(Path(trials_path).read_text())
    assert trials == [{"params": {"C": 0.1}, "score": 0.9}, {"params": {"C": 1.0}, "score": 0.96}]


def test_a_failed_log_marks_runs_failed_and_cannot_be_registered(
    repo: MlflowRepository, tracking_uri: str, training_run: TrainingRun, bundle_dir: Path
) -> None:
    broken = dataclasses.replace(training_run.candidates[1], metrics={"val_accuracy": "n/a"})  # type: ignore[dict-item]
    run = dataclasses.replace(training_run, candidates=[training_run.candidates[0], broken])

    with pytest.raises(RepositoryError, match="logging training run 'iris' failed"):
        repo.log_training(run, bundle_dir)

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("iris")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    assert {r.info.status for r in runs} == {"FAILED"}
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    with pytest.raises(RepositoryError, match="not a finished layerops training run"):
        repo.register("iris", RunInfo(parent.info.run_id, experiment.experiment_id, ""))


def test_register_alias_and_rollback(
    repo: MlflowRepository, tracking_uri: str, training_run: TrainingRun, bundle_dir: Path
) -> None:
    info = repo.log_training(training_run, bundle_dir)
    first = repo.register("iris", info, tags={"owner": "ml-team"})
    second = repo.register("iris", info)

    assert (first.version, second.version) == (1, 2)
    assert first.run_id == info.run_id
    assert first.source == info.bundle_uri.removesuffix("/bundle")
    assert bundle_uri(first) == info.bundle_uri
    assert first.tags["owner"] == "ml-team"
    assert first.tags[DIGEST_TAG] == hashlib.sha256((bundle_dir / "manifest.json").read_bytes()).hexdigest()
    assert first.tags["layerops.dataset_sha256"] == "0" * 64
    assert first.created_at.tzinfo is not None

    repo.set_alias("iris", "production", 1, reason="first release")
    repo.set_alias("iris", "production", 2, reason="better model")
    assert repo.resolve_alias("iris", "production").version == 2

    change = repo.rollback("iris", "production", reason="latency regression")

    assert (change.version, change.previous) == (1, 2)
    assert repo.resolve_alias("iris", "production").version == 1
    reopened = MlflowRepository(tracking_uri)  # the history lives in the registry, not in memory
    history = reopened.history("iris")
    assert [(c.alias, c.previous, c.version) for c in history] == [
        ("production", None, 1),
        ("production", 1, 2),
        ("production", 2, 1),
    ]
    assert [c.reason for c in history[:2]] == ["first release", "better model"]
    assert "rollback" in history[2].reason and "latency regression" in history[2].reason
    assert history[0].at <= history[1].at <= history[2].at

    assert [v.version for v in repo.list_versions("iris")] == [2, 1]
    assert repo.get_version("iris", 1).aliases == ("production",)
    (summary,) = repo.list_models()
    assert (summary.name, summary.latest_version, summary.aliases) == ("iris", 2, {"production": 1})


def test_rollback_walks_back_through_the_history(
    repo: MlflowRepository, training_run: TrainingRun, bundle_dir: Path
) -> None:
    _registered(repo, training_run, bundle_dir, times=3)
    for version in (1, 2, 3):
        repo.set_alias("iris", "production", version)
    steps = [repo.rollback("iris", "production") for _ in range(2)]
    assert [(c.previous, c.version, c.rollback) for c in steps] == [(3, 2, True), (2, 1, True)]
    with pytest.raises(NotFoundError, match="no earlier version"):
        repo.rollback("iris", "production")
    # A new promotion starts a new step; rolling back from it returns to where the alias stood.
    repo.set_alias("iris", "production", 3)
    assert repo.rollback("iris", "production").version == 1
    assert [c.rollback for c in repo.history("iris")] == [False, False, False, True, True, False, True]


def test_a_history_written_before_rollbacks_were_marked_still_walks_back(
    repo: MlflowRepository, tracking_uri: str, training_run: TrainingRun, bundle_dir: Path
) -> None:
    from mlflow import MlflowClient

    _registered(repo, training_run, bundle_dir, times=3)
    for version in (1, 2, 3):
        repo.set_alias("iris", "production", version)
    repo.rollback("iris", "production")
    client = MlflowClient(tracking_uri)
    for key, value in client.get_registered_model("iris").tags.items():
        if key.startswith("layerops.alias_history."):
            entry = json.loads(value)
            del entry["kind"]  # the format of earlier releases
            client.set_registered_model_tag("iris", key, json.dumps(entry))
    assert repo.history("iris")[-1].rollback
    assert repo.rollback("iris", "production").version == 1


def test_rollback_without_an_earlier_version_is_refused(
    repo: MlflowRepository, training_run: TrainingRun, bundle_dir: Path
) -> None:
    _registered(repo, training_run, bundle_dir, times=1)
    repo.set_alias("iris", "production", 1)

    with pytest.raises(NotFoundError, match="alias 'production' has no earlier version"):
        repo.rollback("iris", "production")
    with pytest.raises(NotFoundError, match="alias 'candidate' has no earlier version"):
        repo.rollback("iris", "candidate")


def test_load_bundle_by_alias_and_version_predicts_like_the_original(
    repo: MlflowRepository,
    training_run: TrainingRun,
    bundle_dir: Path,
    bundle: ModelBundle,
    iris_frame: pd.DataFrame,
) -> None:
    _registered(repo, training_run, bundle_dir, times=2)
    repo.set_alias("iris", "production", 2)
    features = iris_frame[IRIS_FEATURES]
    expected = bundle.model.predict_proba(features)

    for ref in ("production", 1, "2"):
        loaded = repo.load_bundle("iris", ref)
        np.testing.assert_allclose(loaded.model.predict_proba(features), expected)
        assert loaded.metadata == bundle.metadata


def test_load_bundle_reuses_and_repairs_the_cache(
    tracking_uri: str, tmp_path: Path, training_run: TrainingRun, bundle_dir: Path
) -> None:
    cache = tmp_path / "cache"
    repo = MlflowRepository(tracking_uri, artifact_root=str(tmp_path / "artifacts"), cache_dir=cache)
    _registered(repo, training_run, bundle_dir, times=1)

    repo.load_bundle("iris", 1)
    (cached,) = cache.iterdir()
    (cached / "model.skops").write_bytes(b"garbage")
    repo.load_bundle("iris", 1)

    assert [p.name for p in cache.iterdir()] == [cached.name]
    assert (cached / "model.skops").read_bytes() == (bundle_dir / "model.skops").read_bytes()


def test_a_tampered_artifact_is_refused(
    repo: MlflowRepository, training_run: TrainingRun, bundle_dir: Path
) -> None:
    _registered(repo, training_run, bundle_dir, times=1)
    stored = _source_folder(repo, "iris", 1)
    (stored / "model.skops").write_bytes((stored / "model.skops").read_bytes() + b"\0")

    with pytest.raises(BundleError, match=r"model\.skops does not match"):
        repo.load_bundle("iris", 1)


def test_a_consistently_rewritten_bundle_fails_the_registry_digest(
    repo: MlflowRepository, training_run: TrainingRun, bundle_dir: Path
) -> None:
    _registered(repo, training_run, bundle_dir, times=1)
    stored = _source_folder(repo, "iris", 1)
    manifest = json.loads((stored / "manifest.json").read_text())
    manifest["trusted_types"].append("sklearn.tree._tree.Tree")
    (stored / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match="changed after registration"):
        repo.load_bundle("iris", 1)


def test_unknown_names_raise_not_found(
    repo: MlflowRepository, training_run: TrainingRun, bundle_dir: Path
) -> None:
    with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
        repo.resolve_alias("nope", "production")
    with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
        repo.list_versions("nope")
    with pytest.raises(NotFoundError, match="training run 'deadbeef' does not exist"):
        repo.register("iris", RunInfo("deadbeef", "0", ""))

    _registered(repo, training_run, bundle_dir, times=1)
    with pytest.raises(NotFoundError, match="model 'iris' has no alias 'production'"):
        repo.resolve_alias("iris", "production")
    with pytest.raises(NotFoundError, match="model 'iris' has no alias 'production'"):
        repo.load_bundle("iris", "production")
    with pytest.raises(NotFoundError, match="model 'iris' has no version 7"):
        repo.get_version("iris", 7)
    with pytest.raises(NotFoundError, match="model 'iris' has no version 7"):
        repo.set_alias("iris", "production", 7)


def test_an_unreachable_server_fails_fast() -> None:
    started = time.monotonic()

    with pytest.raises(RepositoryUnavailableError, match=r"http://127\.0\.0\.1:9"):
        MlflowRepository("http://127.0.0.1:9")

    assert time.monotonic() - started < 5


def test_an_unsupported_uri_is_unavailable() -> None:
    with pytest.raises(RepositoryUnavailableError, match="foo://bar"):
        MlflowRepository("foo://bar")


def test_open_repository_creates_the_home_and_satisfies_the_protocol(tmp_path: Path) -> None:
    home = tmp_path / "new-home"

    repo = open_repository(Settings(home=home))

    assert isinstance(repo, ModelRepository)
    assert (home / "mlflow.db").is_file()
    assert repo.list_models() == []


def test_importing_the_repository_package_does_not_import_mlflow() -> None:
    code = "import sys, layerops.repository, layerops.repository.factory; print('mlflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
