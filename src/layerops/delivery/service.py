"""The one inference service every transport calls: native routes, KServe V2, MLflow, the CLI.

Model calls run in a fixed thread pool (`inference_threads`): a request that times out frees its
connection at once, and its model call either never starts (still queued) or finishes on one of
the pool's threads, so busy threads never exceed the bound. (anyio's CapacityLimiter would hand
the slot back on cancellation while the thread kept running.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import pandas as pd

from layerops.delivery.engines import EngineOutput
from layerops.delivery.models import ModelLoader, ModelRegistry, ServedModel, probabilities_by_class

T = TypeVar("T")

PredictionObserver = Callable[["Prediction"], None]


@dataclass(frozen=True)
class Prediction:
    """A model's answer for a batch, with the version that gave it."""

    model: ServedModel
    output: EngineOutput

    @property
    def classes(self) -> list[str] | None:
        """Class labels in probability-column order (classification)."""
        return self.model.metadata.classes

    def labels(self) -> list[str]:
        """Predicted class labels (classification)."""
        classes = self.classes or []
        return [classes[int(i)] for i in self.output.values]

    def values(self) -> list[float]:
        """Predicted values (regression)."""
        return [float(v) for v in self.output.values]

    def predictions(self) -> list[Any]:
        """Labels for a classifier, values for a regressor."""
        return self.labels() if self.classes else self.values()

    def as_dict(self) -> dict[str, Any]:
        """The native response body."""
        body: dict[str, Any] = {
            "model": self.model.name,
            "version": self.model.version,
            "predictions": self.predictions(),
        }
        if self.output.probabilities is not None and self.classes:
            body["probabilities"] = probabilities_by_class(self.output.probabilities, self.classes)
        return body


class InferenceService:
    """Validates inputs, picks the model version, runs its engine, reports the prediction."""

    def __init__(
        self,
        registry: ModelRegistry,
        loader: ModelLoader,
        *,
        threads: int = 4,
        observer: PredictionObserver | None = None,
    ) -> None:
        self.registry = registry
        self.loader = loader
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="layerops-inference")
        self._observer = observer

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking work in the bounded inference pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(func, *args))

    def close(self) -> None:
        """Stop the pool: queued calls are cancelled, running ones finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def model(self, name: str, version: int | None = None) -> ServedModel:
        """The served model (current version, or a specific one loaded on demand)."""
        if version is None:
            return self.registry.get(name)
        return self.registry.get_version(name, version, self.loader)

    def predict_frame(self, model: ServedModel, frame: pd.DataFrame) -> Prediction:
        """Run a validated frame through the model's engine."""
        prediction = Prediction(model, model.engine.predict(frame))
        if self._observer is not None:
            self._observer(prediction)
        return prediction

    def predict_rows(self, name: str, payload: Any, version: int | None = None) -> Prediction:
        """One JSON object or a list of objects → a prediction (raises `InputError` on bad input)."""
        model = self.model(name, version)
        return self.predict_frame(model, model.validator.rows(payload))

    def predict_columns(
        self, name: str, columns: Mapping[str, Sequence[Any]], version: int | None = None
    ) -> Prediction:
        """Named columns of equal length → a prediction."""
        model = self.model(name, version)
        return self.predict_frame(model, model.validator.columns(columns))
