"""Lineage: what a model was made from, enough to rebuild it (`layerops.api.reproduce`)."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from layerops.bundle import Lineage
from layerops.errors import DataError
from layerops.repository.api import FIT_SPLITS_TAG, LIBRARIES_TAG
from layerops.spec import PipelineSpec

_LIBRARIES = (
    "layerops",
    "numpy",
    "pandas",
    "scikit-learn",
    "xgboost",
    "lightgbm",
    "optuna",
    "skl2onnx",
    "onnxruntime",
    "skops",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a model, and Python's."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (fixed argv, no shell)
        ["git", "-C", str(folder), *args],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )


def git_state(folder: Path, spec_file: Path | None = None) -> tuple[str | None, bool | None]:
    """The commit checked out in `folder`'s repository and whether the work differs from it.

    Dirty means a modified tracked file, or a spec file git does not track (a spec nobody
    committed cannot be rebuilt from the commit). (None, None) outside a git repository.
    """
    try:
        head = _git(folder, "rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        changed = _git(folder, "status", "--porcelain", "--untracked-files=no").stdout.strip()
        untracked = (
            spec_file is not None
            and _git(folder, "ls-files", "--error-unmatch", str(spec_file)).returncode != 0
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip(), bool(changed) or untracked


def _redact_url(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def describe_source(spec: PipelineSpec) -> str:
    """The data source as one line: a path, a URL, a SQL query against a URL, or in-memory data."""
    if spec.data is None:
        return "in-memory DataFrame (layerops.train(data=...))"
    if spec.data.path is not None:
        return spec.resolve_path(spec.data.path)
    assert spec.data.sql is not None
    return f"sql: {spec.data.sql.query} @ {_redact_url(spec.data.sql.url)}"  # never record credentials


def check_data(spec: PipelineSpec, data_hash: str, expected: str | None) -> str:
    """`data_hash`, unless a reproduction `expected` another: then DataError before any training."""
    if expected is not None and data_hash != expected:
        raise DataError(
            f"the data changed: {describe_source(spec)} hashes to {data_hash[:16]}…, the "
            f"recorded training data to {expected[:16]}…; nothing was trained"
        )
    return data_hash


def spec_content(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as validated, with credentials in a SQL URL redacted."""
    content = spec.model_dump(mode="json")
    if spec.data is not None and spec.data.sql is not None:
        content["data"]["sql"]["url"] = _redact_url(spec.data.sql.url)
    return content


def collect(spec: PipelineSpec, dataset_sha256: str, *, fit_splits: list[str] | None = None) -> Lineage:
    """The lineage record of a run of `spec` on data with the given content hash, whose model
    was fitted on `fit_splits`."""
    commit, dirty = git_state(spec.base_dir, spec.spec_file)
    return Lineage(
        dataset_sha256=dataset_sha256,
        spec_sha256=spec.content_hash(),
        seed=spec.seed,
        git_commit=None if commit is None else f"{commit}+dirty" if dirty else commit,
        git_dirty=dirty,
        data_source=describe_source(spec),
        libraries=library_versions(),
        spec=spec_content(spec),
        python=platform.python_version(),
        platform=platform.platform(),
        fit_splits=fit_splits or [],
    )


def tags(lin: Lineage, spec: PipelineSpec) -> dict[str, str]:
    """The lineage as run and version tags (`repository.api.LINEAGE_TAGS`: what `models show` prints)."""
    recorded = {
        "layerops.dataset_sha256": lin.dataset_sha256,
        "layerops.spec_sha256": lin.spec_sha256,
        "layerops.seed": str(lin.seed),
        "layerops.data_source": lin.data_source,
        "layerops.python": lin.python,
        "layerops.platform": lin.platform,
        LIBRARIES_TAG: json.dumps(lin.libraries, sort_keys=True),
    }
    if lin.fit_splits:
        recorded[FIT_SPLITS_TAG] = "+".join(lin.fit_splits)
    if spec.spec_file is not None:
        recorded["layerops.spec_path"] = str(spec.spec_file)
    if lin.git_commit:
        recorded["layerops.git_commit"] = lin.git_commit
    if lin.git_dirty is not None:
        recorded["layerops.git_dirty"] = str(lin.git_dirty).lower()
    return recorded
