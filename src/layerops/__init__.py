"""layerops: from a tabular data file to a registered model and a production endpoint.

The Python API is imported on first use, so `import layerops` (and the CLI's `--help`) stays fast:

>>> import layerops
>>> sorted(name for name in layerops.__all__ if not name.startswith("_"))
['Model', 'RetrainResult', 'Server', 'TrainResult', 'batch_predict', 'drift', 'feedback', 'load', 'models',
 'reproduce', 'retrain', 'serve', 'train']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layerops.version import __version__

if TYPE_CHECKING:
    from layerops.api import (
        Model,
        RetrainResult,
        Server,
        TrainResult,
        batch_predict,
        drift,
        feedback,
        load,
        models,
        reproduce,
        retrain,
        serve,
        train,
    )

__all__ = [
    "Model",
    "RetrainResult",
    "Server",
    "TrainResult",
    "__version__",
    "batch_predict",
    "drift",
    "feedback",
    "load",
    "models",
    "reproduce",
    "retrain",
    "serve",
    "train",
]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        import layerops.api

        # Through the package's resolver, not getattr: once `layerops.api.reproduce` (the
        # submodule) was imported, the attribute of that name is the module, not the function.
        return layerops.api.__getattr__(name)
    raise AttributeError(f"module 'layerops' has no attribute {name!r}")
