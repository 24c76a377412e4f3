"""A local folder of downloaded bundles keyed by manifest digest; every hit is verified again."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from layerops.bundle import ModelBundle, load_bundle
from layerops.errors import BundleError

Download = Callable[[Path], Path]
"""Downloads a bundle into the given empty folder and returns the bundle folder inside it."""


def fetch_bundle(
    download: Download, digest: str, cache_dir: Path | None, *, native: bool = True
) -> ModelBundle:
    """Load the bundle pinned by `digest`: from `cache_dir` when a verified copy is there.

    `native=False` leaves the native model undeserialised (every file is still verified).
    """
    if cache_dir is None or not _writable(cache_dir):
        with tempfile.TemporaryDirectory(prefix="layerops-bundle-") as tmp:
            return load_bundle(download(Path(tmp)), expected_digest=digest, native=native)
    cached = cache_dir / digest
    if cached.is_dir():
        try:
            return load_bundle(cached, expected_digest=digest, native=native)
        except BundleError:  # a damaged cache entry: fetch a fresh copy
            shutil.rmtree(cached, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    try:
        folder = download(staging)
        bundle = load_bundle(folder, expected_digest=digest, native=native)
        try:
            folder.rename(cached)
        except OSError:  # another process cached the same digest first
            pass
        return bundle
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return True
