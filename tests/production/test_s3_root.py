"""layerops with an `s3://` artifact root and tracking straight on PostgreSQL (no MLflow server),
configured by environment variables only: `LAYEROPS_TRACKING_URI`, `LAYEROPS_ARTIFACT_ROOT`,
`MLFLOW_S3_ENDPOINT_URL` and the AWS credentials. Missing credentials or an unreachable store are
one clear line, not a botocore traceback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import layerops
from layerops.bundle import ModelBundle
from layerops.datasets import iris
from layerops.errors import BundleError, RepositoryError, RepositoryUnavailableError
from layerops.repository.factory import open_repository
from layerops.repository.mlflow_repo import DIGEST_TAG
from layerops.settings import load_settings
from tests.production.stack import S3Store, clean_environment, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MODEL = "direct"
PREFIX = "direct-root"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LOAD = """
import sys
from layerops.errors import LayeropsError
from layerops.repository.factory import open_repository
from layerops.settings import load_settings
try:
    open_repository(load_settings(), create=False).load_bundle(sys.argv[1], int(sys.argv[2]))
except LayeropsError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
"""
"""Load a version's bundle in a fresh process; a layerops error is one line on stderr, exit 1."""


@dataclass(frozen=True)
class Registered:
    """The version the module trained, and the bundle training produced."""

    version: int
    run_id: str
    source: str
    digest: str
    bundle: ModelBundle


def configured(home: Path, database: str, store: S3Store) -> dict[str, str]:
    """Everything a client of the direct setup is given, all by environment."""
    return {
        "LAYEROPS_HOME": str(home),
        "LAYEROPS_TRACKING_URI": database,
        "LAYEROPS_ARTIFACT_ROOT": f"s3://{store.bucket}/{PREFIX}",
        **store.env,
    }


@pytest.fixture
def direct(
    database: str, s3_store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> pytest.MonkeyPatch:
    """This process configured as a client of the direct setup, with a fresh home (an empty bundle
    cache: every load downloads from S3)."""
    for key, value in configured(tmp_path / "home", database, s3_store).items():
        monkeypatch.setenv(key, value)
    return monkeypatch


@pytest.fixture(scope="module")
def registered(database: str, s3_store: S3Store, tmp_path_factory: pytest.TempPathFactory) -> Registered:
    """One training registered (as production) through the direct setup."""
    home = tmp_path_factory.mktemp("direct-home")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in configured(home, database, s3_store).items():
            patch.setenv(key, value)
        spec = {
            "name": MODEL,
            "target": "species",
            "seed": 3,
            "cleaning": {"collinearity_threshold": None},
            "candidates": [{"name": "decision_tree", "params": {"max_depth": 3}}],
            "tuning": {"trials": 1, "cv_folds": 0},
        }
        result = layerops.train(spec, data=iris(), alias="production", jobs=1)
    entry = result.registered
    assert entry is not None and entry.run_id is not None
    assert not (home / "artifacts").exists()  # nothing went to the local disk
    return Registered(entry.version, entry.run_id, entry.source, entry.tags[DIGEST_TAG], result.bundle)


def test_train_register_promote_and_load_with_an_s3_artifact_root(
    registered: Registered, s3_store: S3Store, direct: pytest.MonkeyPatch
) -> None:
    assert registered.source.startswith(f"s3://{s3_store.bucket}/{PREFIX}/{MODEL}/")
    keys = s3_store.keys(f"{PREFIX}/")
    (manifest,) = [
        k for k in keys if k.endswith(f"/{registered.run_id}/artifacts/model/bundle/manifest.json")
    ]
    assert s3_store.sha256(manifest) == registered.digest

    model = layerops.load(MODEL)  # production, downloaded from S3 into the empty home

    assert model.version == registered.version
    frame = iris()[FEATURES]
    expected = registered.bundle.model.predict_proba(frame)
    np.testing.assert_allclose(model.predict_proba(frame).to_numpy(), expected, atol=1e-5)


def test_an_artifact_changed_in_s3_is_refused(
    registered: Registered, s3_store: S3Store, direct: pytest.MonkeyPatch
) -> None:
    keys = s3_store.keys(f"{PREFIX}/")
    (metadata,) = [
        k for k in keys if k.endswith(f"/{registered.run_id}/artifacts/model/bundle/metadata.json")
    ]
    client = s3_store.client()
    original = client.get_object(Bucket=s3_store.bucket, Key=metadata)["Body"].read()
    client.put_object(
        Bucket=s3_store.bucket, Key=metadata, Body=original.replace(b"decision_tree", b"random_forest")
    )
    try:
        with pytest.raises(BundleError, match=r"metadata\.json"):
            open_repository(load_settings(), create=False).load_bundle(MODEL, registered.version)
    finally:
        client.put_object(Bucket=s3_store.bucket, Key=metadata, Body=original)


def test_a_process_without_credentials_gets_one_line_naming_the_variables(
    registered: Registered, database: str, s3_store: S3Store, tmp_path: Path
) -> None:
    # A process of its own: MLflow keeps one S3 client per process, made with the credentials of
    # the moment, so only a process started without them shows what such a client meets.
    env = clean_environment(
        LAYEROPS_HOME=str(tmp_path / "home"),
        LAYEROPS_TRACKING_URI=database,
        MLFLOW_S3_ENDPOINT_URL=s3_store.endpoint,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
    )

    result = subprocess.run(
        [sys.executable, "-c", LOAD, MODEL, str(registered.version)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("RepositoryUnavailableError: cannot use the artifact storage (downloading s3://")
    assert "Unable to locate credentials" in line and "AWS_ACCESS_KEY_ID" in line


def test_an_unreachable_s3_endpoint_is_one_line(registered: Registered, direct: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    direct.setenv("MLFLOW_S3_ENDPOINT_URL", endpoint)
    direct.setenv("AWS_MAX_ATTEMPTS", "1")

    with pytest.raises(RepositoryUnavailableError) as caught:
        open_repository(load_settings(), create=False).load_bundle(MODEL, registered.version)

    (line,) = str(caught.value).splitlines()
    assert line.startswith("the artifact storage is unavailable (downloading s3://")
    assert endpoint in line
    assert isinstance(caught.value, RepositoryError)
