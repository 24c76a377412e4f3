"""The contract between layers: a trained model, its preprocessing and its metadata, as files."""

from layerops.bundle.metadata import BundleMetadata, FeatureSchema, Lineage, OnnxInfo
from layerops.bundle.store import ModelBundle, bundle_digest, load_bundle, save_bundle

__all__ = [
    "BundleMetadata",
    "FeatureSchema",
    "Lineage",
    "ModelBundle",
    "OnnxInfo",
    "bundle_digest",
    "load_bundle",
    "save_bundle",
]
