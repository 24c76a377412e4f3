"""The model a batch is scored with, and the form in which it travels to Dask workers.

ONNX Runtime scores where the bundle carries a validated export that still matches the native
model's reference outputs (within `PARITY_TOLERANCE`), else the native scikit-learn pipeline:
the choice `layerops serve` makes, with the same check. The delivery layer's engines cannot be
imported here (batch and delivery are independent layers), and they take the request
validator's feeds, so this is the minimum again for checked Arrow partitions: one ONNX session
per model and process, fed one [N, 1] array per feature as `layerops.bundle.onnx_io` specifies.

`ScoringModel` is what a worker receives: the metadata and the ONNX bytes (or, with no usable
export, the native pipeline the client loaded from the verified skops file), never a live
session. Each worker process builds its scorer once per model (`worker_scorer`, keyed by the
model's content digest) and reuses it for every partition.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from layerops.batch.validation import RowChecker, Values
from layerops.bundle import BundleMetadata, ModelBundle
from layerops.bundle.onnx_io import (
    MISSING_CATEGORY,
    PREDICTION_OUTPUT,
    PROBABILITIES_OUTPUT,
    numeric_input_dtype,
)
from layerops.errors import BundleError

PARITY_TOLERANCE = 1e-5
"""Largest |ONNX − native| on the reference rows for ONNX Runtime to score (as when serving)."""
NATIVE_TOLERANCE = 1e-9
"""Largest change of the native pipeline's reference outputs since training."""
_WORKER_MODELS = 2
"""Scorers a worker process keeps (a rerun with a new version should not pile them up)."""


@dataclass(frozen=True)
class Output:
    """A model's answer for a batch of good rows."""

    values: npt.NDArray[Any]
    """Class indices (classification) or predicted values (regression), shape [N]."""
    probabilities: npt.NDArray[np.float64] | None = None
    """[N, n_classes], classification only."""


class Scorer(Protocol):
    """Scores checked feature values."""

    name: str

    def predict(self, values: Values) -> Output:
        """Outputs for every row of `values` (all rows good)."""
        ...


class OnnxScorer:
    """ONNX Runtime on the bundle's export: one session, fed as `onnx_io` specifies."""

    name = "onnx"

    def __init__(self, metadata: BundleMetadata, onnx: bytes, *, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Between two partitions this process reads and writes Parquet; spinning pool threads
        # would burn the cores that work needs (and other processes' on a shared machine).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        declared = {str(node.name): str(node.type) for node in self._session.get_inputs()}
        numeric = np.dtype(numeric_input_dtype(declared.values()))
        self._inputs = [
            (f.name, declared[f.name] == "tensor(string)", numeric)
            for f in metadata.features
            if f.name in declared
        ]
        self._classify = metadata.task == "classification"
        self._output = PROBABILITIES_OUTPUT if self._classify else PREDICTION_OUTPUT
        outputs = [str(node.name) for node in self._session.get_outputs()]
        if self._output not in outputs:
            raise BundleError(f"{metadata.name}: ONNX graph lacks output {self._output!r} (has {outputs})")

    def predict(self, values: Values) -> Output:
        """Run the graph; outputs as float64."""
        feeds = {
            name: _text_feed(values[name]) if text else values[name].astype(dtype, copy=False).reshape(-1, 1)
            for name, text, dtype in self._inputs
        }
        (out,) = self._session.run([self._output], feeds)
        result = np.asarray(out, dtype=np.float64)
        if self._classify:
            return Output(result.argmax(axis=1), result)
        return Output(result.reshape(-1))


class NativeScorer:
    """The bundle's fitted scikit-learn pipeline, on the frame it was fitted on."""

    name = "native"

    def __init__(self, metadata: BundleMetadata, model: Any) -> None:
        self._model = model
        self._names = metadata.feature_names()
        self._classify = metadata.task == "classification"

    def predict(self, values: Values) -> Output:
        """predict_proba (classification) or predict, as float64."""
        frame = pd.DataFrame(
            {name: _native_column(values[name]) for name in self._names}, columns=self._names
        )
        if self._classify:
            proba = np.asarray(self._model.predict_proba(frame), dtype=np.float64)
            return Output(proba.argmax(axis=1), proba)
        return Output(np.asarray(self._model.predict(frame), dtype=np.float64).reshape(-1))


@dataclass(frozen=True)
class ScoringModel:
    """One registered version in the form a Dask worker receives: data, no session."""

    name: str
    version: int
    metadata: BundleMetadata = field(repr=False)
    engine: Literal["onnx", "native"]
    onnx: bytes | None = field(default=None, repr=False)
    native: Any = field(default=None, repr=False)
    """The native pipeline (only when ONNX Runtime does not score)."""
    key: str = ""
    """A digest of what scores (metadata and ONNX bytes): the worker cache's key."""
    note: str | None = None
    """Why ONNX Runtime does not score, when it does not."""

    @functools.cached_property
    def checker(self) -> RowChecker:
        """The row checks of this model's input schema (built once per process)."""
        return RowChecker(self.metadata.features)

    def scorer(self, *, threads: int = 0) -> Scorer:
        """A new scorer (`threads`: ONNX Runtime's intra-op threads; 0 lets it choose)."""
        if self.engine == "onnx" and self.onnx is not None:
            return OnnxScorer(self.metadata, self.onnx, threads=threads)
        return NativeScorer(self.metadata, self.native)


def prepare(
    bundle: ModelBundle, name: str, version: int, native: Callable[[], ModelBundle] | None = None
) -> tuple[ScoringModel, Scorer]:
    """The version's `ScoringModel` and a checked scorer for this process.

    ONNX when the export converted and matches the native outputs on the reference rows; the
    native pipeline otherwise (from `bundle.model`, else `native()`), which must still give its
    own reference outputs. Raises `BundleError` naming the model when neither can score.
    """
    metadata = bundle.metadata
    digest = hashlib.sha256(metadata.model_dump_json().encode("utf-8"))
    reason = f"no validated ONNX export ({metadata.onnx.reason or 'absent'})"
    if bundle.onnx_model is not None and metadata.onnx.converted:
        try:
            onnx = OnnxScorer(metadata, bundle.onnx_model)
            error = parity_error(onnx, metadata)
        except Exception as exc:  # onnxruntime raises its own error types
            reason = f"ONNX Runtime failed to load or run the export: {str(exc).splitlines()[0]}"
        else:
            if error <= PARITY_TOLERANCE:
                digest.update(bundle.onnx_model)
                model = ScoringModel(
                    name, version, metadata, "onnx", onnx=bundle.onnx_model, key=digest.hexdigest()
                )
                return model, onnx
            reason = f"ONNX parity check failed: max error {error:.2e} > {PARITY_TOLERANCE:g}"
    pipeline = bundle.model if bundle.model is not None else (native().model if native else None)
    if pipeline is None:
        raise BundleError(f"{name} v{version}: {reason}, and the native model was not loaded")
    scorer = NativeScorer(metadata, pipeline)
    error = parity_error(scorer, metadata)
    if error > NATIVE_TOLERANCE:
        raise BundleError(f"{name} v{version}: reference rows differ from training by {error:.2e}")
    digest.update(b"native")
    model = ScoringModel(
        name, version, metadata, "native", native=pipeline, key=digest.hexdigest(), note=reason
    )
    return model, scorer


def parity_error(scorer: Scorer, metadata: BundleMetadata) -> float:
    """Largest |scorer − recorded| over the bundle's reference rows (probabilities or values)."""
    rows = metadata.reference_rows
    if not rows:
        return 0.0
    checked = RowChecker(metadata.features).check(pa.Table.from_pylist([row["features"] for row in rows]))
    if checked.rejected:
        return math.inf
    output = scorer.predict(checked.values)
    if output.probabilities is not None:
        expected = np.asarray([row["probabilities"] for row in rows], dtype=np.float64)
        return float(np.max(np.abs(output.probabilities - expected)))
    expected = np.asarray([row["prediction"] for row in rows], dtype=np.float64)
    return float(np.max(np.abs(output.values - expected)))


_worker_scorers: OrderedDict[str, Scorer] = OrderedDict()
_worker_lock = threading.Lock()


def worker_scorer(model: ScoringModel) -> Scorer:
    """This process's scorer for `model`, built on first use (one ONNX thread: a worker runs one
    task per thread, so its threads are the parallelism)."""
    with _worker_lock:
        found = _worker_scorers.get(model.key)
        if found is None:
            found = _worker_scorers[model.key] = model.scorer(threads=1)
            while len(_worker_scorers) > _WORKER_MODELS:
                _worker_scorers.popitem(last=False)
        _worker_scorers.move_to_end(model.key)
        return found


def _text_feed(values: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    out = np.where(pd.isna(values), MISSING_CATEGORY, values)
    return np.asarray(out, dtype=object).reshape(-1, 1)


def _native_column(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if values.dtype == object:
        return np.where(pd.isna(values), np.nan, values)
    return values
