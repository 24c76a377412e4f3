"""Where layerops keeps things in MLflow: the tags it writes and the artifact paths of a run.

A training run logs one standard MLflow model folder, `model/`, and registers it as the version's
source, so `mlflow.pyfunc.load_model("models:/NAME@ALIAS")` and `mlflow models serve` take the
registered version itself:

    model/
      MLmodel            python_function flavour (loader `layerops.repository.mlflow_pyfunc`,
                         data `bundle`) and sklearn flavour (`bundle/model.skops`, skops)
      requirements.txt, python_env.yaml, conda.yaml
      bundle/            the layerops bundle, unchanged: manifest.json pins every file in it

Versions tagged `layerops.layout = mlflow-model/1` keep their bundle at `<source>/bundle`; older
versions (no layout tag) have the bundle folder itself as their source.
"""

from __future__ import annotations

DIGEST_TAG = "layerops.bundle_digest"
"""Model-version tag: SHA-256 of the bundle's manifest.json, checked at every load."""
KIND_TAG = "layerops.kind"
RUN_TAG = "layerops.run_id"
LAYOUT_TAG = "layerops.layout"
"""Run and model-version tag: how the run's artifacts are laid out (absent: the bundle alone)."""
MLFLOW_MODEL_LAYOUT = "mlflow-model/1"
"""The `LAYOUT_TAG` value of an MLflow model folder with the bundle inside (`model/bundle/`)."""
MLFLOW_MODEL_TAG = "layerops.mlflow_model_uri"
"""Run and model-version tag: artifact URI of the MLflow model folder (the version's source);
kept for tools that read it, though `models:/NAME@ALIAS` now loads the same folder."""
PARENT_TAG = "mlflow.parentRunId"
MODEL_PATH = "model"
"""Run artifact path of the MLflow model folder, the registered version's source."""
BUNDLE_PATH = "bundle"
"""The bundle folder's name: inside `model/`, or (older runs) at the run's artifact root."""


def bundle_path(layout: str | None) -> str:
    """The bundle's artifact path in a run logged with `layout` (a `LAYOUT_TAG` value or None)."""
    return f"{MODEL_PATH}/{BUNDLE_PATH}" if layout == MLFLOW_MODEL_LAYOUT else BUNDLE_PATH


def source_path(layout: str | None) -> str:
    """The artifact path a version of a run logged with `layout` is registered from."""
    return MODEL_PATH if layout == MLFLOW_MODEL_LAYOUT else BUNDLE_PATH
