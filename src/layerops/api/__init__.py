"""The Python API: what `import layerops` offers a notebook, and what the CLI is a shell over.

- `layerops.train(spec, data=..., alias=...)` → `TrainResult`
- `layerops.load("iris@production")` → `Model` with `.predict(df)` (labels), `.predict_proba(df)`
- `layerops.models.list() / show() / promote() / rollback() / history()`
- `layerops.api.releases.gate("iris", version=3)` → `GateReport`; `releases.promote(...)` through the gate
- `layerops.reproduce("iris@3")` → a new version rebuilt from the recorded lineage
- `layerops.serve(["iris"])` → a running `Server` with `.url` and `.stop()`
- `layerops.drift("iris", since="2h")` → `DriftReport`; `layerops.feedback("iris", "labels.csv")`
- `layerops.retrain("iris", "iris.yaml", if_drift=True)` → `RetrainResult` (drift, train, gate, alias)
- `layerops.batch_predict("iris", "rows.parquet", "scored/", dask="local:2")` → `BatchSummary`

Each name is imported on first use: `layerops.models` reads the registry without importing the
training stack, pandas or (for the embedded repository) MLflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layerops.api import models, releases
    from layerops.api.batch import batch_predict
    from layerops.api.inference import Model, load
    from layerops.api.monitoring import drift, feedback
    from layerops.api.reproduce import reproduce
    from layerops.api.retrain import RetrainResult, retrain
    from layerops.api.serving import Server, serve
    from layerops.api.training import TrainResult, train

__all__ = [
    "Model",
    "RetrainResult",
    "Server",
    "TrainResult",
    "batch_predict",
    "drift",
    "feedback",
    "load",
    "models",
    "releases",
    "reproduce",
    "retrain",
    "serve",
    "train",
]
_HOMES = {
    "Model": "layerops.api.inference",
    "batch_predict": "layerops.api.batch",
    "drift": "layerops.api.monitoring",
    "feedback": "layerops.api.monitoring",
    "load": "layerops.api.inference",
    "reproduce": "layerops.api.reproduce",
    "RetrainResult": "layerops.api.retrain",
    "retrain": "layerops.api.retrain",
    "Server": "layerops.api.serving",
    "serve": "layerops.api.serving",
    "TrainResult": "layerops.api.training",
    "train": "layerops.api.training",
}


def __getattr__(name: str) -> Any:
    if name in ("models", "releases"):
        return importlib.import_module(f"layerops.api.{name}")
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'layerops.api' has no attribute {name!r}")
