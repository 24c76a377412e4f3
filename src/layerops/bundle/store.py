"""Saving and loading a bundle folder safely: skops (never raw pickle), ONNX, SHA-256 manifest.

Folder layout:
    metadata.json   BundleMetadata
    model.skops     the fitted sklearn Pipeline (raw feature frame -> prediction)
    model.onnx      optional ONNX export of the same pipeline
    manifest.json   {"format_version", "files": {name: sha256}, "trusted_types": [...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerops.bundle.metadata import BundleMetadata


@dataclass
class ModelBundle:
    """A fitted pipeline that takes the raw feature frame, plus its metadata and ONNX export."""

    model: Any
    """sklearn-compatible estimator: `predict(frame)` (and `predict_proba` for classifiers)."""
    metadata: BundleMetadata
    onnx_model: bytes | None = None


def save_bundle(bundle: ModelBundle, folder: Path) -> str:
    """Write the bundle into `folder` (created; must be empty); return the manifest's SHA-256."""
    raise NotImplementedError


def load_bundle(folder: Path, *, expected_digest: str | None = None, native: bool = True) -> ModelBundle:
    """Verify and read a bundle folder; `native=False` skips the skops model."""
    raise NotImplementedError


def bundle_digest(folder: Path) -> str:
    """SHA-256 of the folder's manifest.json: one value that pins every file."""
    raise NotImplementedError
