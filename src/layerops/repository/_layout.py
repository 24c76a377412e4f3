"""Where layerops keeps things in MLflow: the tags it writes and the bundle's artifact path."""

from __future__ import annotations

DIGEST_TAG = "layerops.bundle_digest"
"""Model-version tag: SHA-256 of the bundle's manifest.json, checked at every load."""
KIND_TAG = "layerops.kind"
RUN_TAG = "layerops.run_id"
MLFLOW_MODEL_TAG = "layerops.mlflow_model_uri"
"""Run and model-version tag: artifact URI of the same pipeline as an MLflow sklearn model, which
`mlflow models serve` and `mlflow.pyfunc.load_model` accept (absent if that export failed)."""
PARENT_TAG = "mlflow.parentRunId"
BUNDLE_PATH = "bundle"
