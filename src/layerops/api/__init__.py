"""The Python API: what `import layerops` offers a notebook, and what the CLI is a shell over.

- `layerops.train(spec, data=..., alias=...)` → `TrainResult`
- `layerops.load("iris@production")` → `Model` with `.predict(df)` (labels), `.predict_proba(df)`
- `layerops.models.list() / show() / promote() / rollback() / history()`
- `layerops.reproduce("iris@3")` → a new version rebuilt from the recorded lineage
- `layerops.serve(["iris"])` → a running `Server` with `.url` and `.stop()`
"""

from layerops.api import models
from layerops.api.inference import Model, load
from layerops.api.reproduce import reproduce
from layerops.api.serving import Server, serve
from layerops.api.training import TrainResult, train

__all__ = ["Model", "Server", "TrainResult", "load", "models", "reproduce", "serve", "train"]
