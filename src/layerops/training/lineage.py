"""Lineage: what a model was made from, enough to reproduce it."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from layerops.bundle import Lineage
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


def git_commit(folder: Path) -> str | None:
    """The commit checked out in `folder`'s repository (with `+dirty` if modified), or None."""
    try:
        head = subprocess.run(  # noqa: S603 (fixed argv, no shell)
            ["git", "-C", str(folder), "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 (fixed argv, no shell)
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def describe_source(spec: PipelineSpec) -> str:
    """The data source as one line: a path, a URL, a SQL query against a URL, or in-memory data."""
    if spec.data is None:
        return "in-memory DataFrame (layerops.train(data=...))"
    if spec.data.path is not None:
        return spec.resolve_path(spec.data.path)
    assert spec.data.sql is not None
    url = spec.data.sql.url
    if "@" in url:  # never record credentials
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return f"sql: {spec.data.sql.query} @ {url}"


def collect(spec: PipelineSpec, dataset_sha256: str) -> Lineage:
    """The lineage record of a run of `spec` on data with the given content hash."""
    return Lineage(
        dataset_sha256=dataset_sha256,
        spec_sha256=spec.content_hash(),
        seed=spec.seed,
        git_commit=git_commit(spec.base_dir),
        data_source=describe_source(spec),
        libraries=library_versions(),
    )
