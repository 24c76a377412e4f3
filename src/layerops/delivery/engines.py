"""Inference engines: ONNX Runtime where the bundle carries a validated export, else the native model.

An engine declares its input `layout` (see `feeds.py`) and takes the per-feature arrays the
validator builds for it (`predict_columns`: no pandas for ONNX). It returns class indices +
probabilities, or regression values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from layerops.bundle import ModelBundle
from layerops.bundle.onnx_io import PREDICTION_OUTPUT, PROBABILITIES_OUTPUT
from layerops.delivery.feeds import Columns, FeedLayout, Feeds
from layerops.delivery.inputs import InputValidator
from layerops.errors import BundleError, LayeropsError

PARITY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class EngineOutput:
    """What a model returned for a batch."""

    values: np.ndarray
    """Class indices (classification) or predicted values (regression), shape [N]."""
    probabilities: np.ndarray | None = None
    """[N, n_classes] float64, classification only."""


class EngineError(LayeropsError):
    """The engine failed to run a batch (a server-side fault, not the request's)."""


class Engine(Protocol):
    """Runs one model version on its feeds."""

    name: str
    layout: FeedLayout
    """The per-feature arrays `predict_columns` takes."""

    def predict_columns(self, columns: Columns) -> EngineOutput:
        """Outputs for every row of `columns` (laid out as `layout` says)."""
        ...


class NativeEngine:
    """The bundle's own fitted scikit-learn pipeline."""

    name = "native"

    def __init__(self, bundle: ModelBundle) -> None:
        self._model = bundle.model
        self._classify = bundle.metadata.task == "classification"
        self._names = [f.name for f in bundle.metadata.features]
        self.layout = FeedLayout.native(bundle.metadata.features)

    def predict_columns(self, columns: Columns) -> EngineOutput:
        """Native predict / predict_proba on the frame the pipeline was fitted on, built from the columns."""
        frame = pd.DataFrame({name: columns[name][:, 0] for name in self._names}, columns=self._names)
        if self._classify:
            proba = np.asarray(self._model.predict_proba(frame), dtype=np.float64)
            return EngineOutput(proba.argmax(axis=1), proba)
        return EngineOutput(np.asarray(self._model.predict(frame), dtype=np.float64).reshape(-1))


class OnnxEngine:
    """ONNX Runtime, one session per model version, created once at load."""

    name = "onnx"

    def __init__(self, bundle: ModelBundle, *, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        if bundle.onnx_model is None:
            raise BundleError(f"{bundle.metadata.name}: the bundle has no ONNX export")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(bundle.onnx_model, options, providers=["CPUExecutionProvider"])
        declared = {str(node.name): str(node.type) for node in self._session.get_inputs()}
        self.layout = FeedLayout.onnx(bundle.metadata.features, declared)
        self._classify = bundle.metadata.task == "classification"
        names = [o.name for o in self._session.get_outputs()]
        self._output = PROBABILITIES_OUTPUT if self._classify else PREDICTION_OUTPUT
        if self._output not in names:
            raise BundleError(
                f"{bundle.metadata.name}: ONNX graph lacks output {self._output!r} (has {names})"
            )

    @property
    def threads(self) -> int:
        """ONNX Runtime's intra-op threads for this session."""
        return int(self._session.get_session_options().intra_op_num_threads)

    def predict_columns(self, columns: Columns) -> EngineOutput:
        """Run the graph on feeds already laid out as it declares; outputs cast to float64."""
        (out,) = self._session.run([self._output], columns)
        result = np.asarray(out, dtype=np.float64)
        if self._classify:
            return EngineOutput(result.argmax(axis=1), result)
        return EngineOutput(result.reshape(-1))


def reference_feeds(bundle: ModelBundle, engine: Engine, limit: int | None = None) -> Feeds:
    """The bundle's reference rows as `engine`'s feeds (the path requests take)."""
    rows = bundle.metadata.reference_rows[:limit] if limit is not None else bundle.metadata.reference_rows
    validator = InputValidator(
        bundle.metadata, extra="ignore", max_rows=max(1, len(rows)), layout=engine.layout
    )
    return validator.row_feeds([row["features"] for row in rows])


def parity_error(engine: Engine, bundle: ModelBundle) -> float:
    """Largest |engine - native| over the bundle's reference rows (probabilities or values).

    The rows go through the serving path: validator feeds → `predict_columns`.
    """
    rows = bundle.metadata.reference_rows
    if not rows:
        return 0.0
    output = engine.predict_columns(reference_feeds(bundle, engine).columns)
    if output.probabilities is not None:
        expected = np.asarray([row["probabilities"] for row in rows], dtype=np.float64)
        return float(np.max(np.abs(output.probabilities - expected)))
    expected = np.asarray([row["prediction"] for row in rows], dtype=np.float64)
    return float(np.max(np.abs(output.values - expected)))


def build_engine(
    bundle: ModelBundle,
    preference: Literal["auto", "onnx", "native"],
    native: Callable[[], ModelBundle] | None = None,
    *,
    onnx_threads: int = 1,
) -> tuple[Engine, str | None]:
    """The engine to serve `bundle` with, and a note when ONNX was wanted but not used.

    `auto` uses ONNX Runtime when the bundle's export converted and still matches the native
    model's reference outputs within `PARITY_TOLERANCE`, else falls back to native; `onnx`
    refuses to fall back. A bundle loaded without its native model (`bundle.model` None) gets
    it from `native()` only when the native engine is needed. `onnx_threads` is ONNX Runtime's
    intra-op thread count per session.
    """

    def native_engine() -> NativeEngine:
        if bundle.model is not None:
            return NativeEngine(bundle)
        if native is None:
            raise BundleError(f"{bundle.metadata.name}: the bundle was loaded without its native model")
        return NativeEngine(native())

    if preference == "native":
        return native_engine(), None
    reason: str | None
    if bundle.onnx_model is None or not bundle.metadata.onnx.converted:
        reason = f"no validated ONNX export ({bundle.metadata.onnx.reason or 'absent'})"
    else:
        try:
            engine = OnnxEngine(bundle, intra_op_threads=onnx_threads)
            error = parity_error(engine, bundle)
        except Exception as exc:  # onnxruntime raises its own error types
            reason = f"ONNX Runtime failed to load or run the export: {str(exc).splitlines()[0]}"
        else:
            if error <= PARITY_TOLERANCE:
                return engine, None
            reason = f"ONNX parity check failed at load: max error {error:.2e} > {PARITY_TOLERANCE:g}"
    if preference == "onnx":
        raise BundleError(f"{bundle.metadata.name}: engine 'onnx' requested but {reason}")
    return native_engine(), reason
