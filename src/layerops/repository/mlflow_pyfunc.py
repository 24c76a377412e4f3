"""MLflow's `python_function` loader for layerops models: they predict as `/invocations` answers.

Every MLmodel layerops writes names this module as its `loader_module` (with `data: bundle`), so
`mlflow.pyfunc.load_model("models:/NAME@ALIAS")` and `mlflow models serve` call `_load_pyfunc`
on the version's `bundle/` folder. The module's name is part of every registered MLmodel: it
must not move.

The model loads the bundle with layerops' own loader (every file checked against the manifest,
the manifest against the digest the MLmodel records, skops with the manifest's trusted types:
nothing is unpickled) and predicts what `layerops serve` answers on `/invocations`: class labels
for a classifier, values for a regressor. Like the serving layer's `auto` engine, it runs the
bundle's ONNX export when it converted and still matches the native model's reference outputs,
else the native pipeline. It uses only the bundle layer and ONNX Runtime (the repository layer
may not import the delivery layer); a test checks both servers give the same bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from layerops.bundle import ModelBundle, load_bundle
from layerops.bundle.onnx_io import (
    MISSING_CATEGORY,
    PREDICTION_OUTPUT,
    PROBABILITIES_OUTPUT,
    numeric_input_dtype,
)
from layerops.errors import BundleError, DataError

PARITY_TOLERANCE = 1e-5
"""Largest |ONNX - native| on the reference rows for ONNX to serve (the serving layer's rule)."""
DIGEST_KEY = "layerops_bundle_digest"
"""MLmodel metadata key: SHA-256 of the bundle's manifest.json."""


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> BundleModel:
    """MLflow's loader hook: the model of the bundle folder at `path` (`<model>/bundle`)."""
    folder = Path(path)
    return BundleModel.load(folder, expected_digest=_recorded_digest(folder.parent / "MLmodel"))


def _recorded_digest(mlmodel: Path) -> str | None:
    """The bundle digest the MLmodel beside the bundle records (None without an MLmodel)."""
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    digest = (meta.get("metadata") or {}).get(DIGEST_KEY) if isinstance(meta, dict) else None
    return str(digest) if digest else None


class BundleModel:
    """A verified bundle that predicts labels (classification) or values (regression) for a frame."""

    def __init__(self, bundle: ModelBundle, onnx: OnnxGraph | None) -> None:
        """Predict with the `onnx` graph when given, else with the native `bundle.model`."""
        if onnx is None and bundle.model is None:
            raise BundleError(f"{bundle.metadata.name}: neither an ONNX session nor the native model")
        self.bundle = bundle
        self.engine = "onnx" if onnx is not None else "native"
        self._onnx = onnx
        meta = bundle.metadata
        self._classes = np.asarray(meta.classes, dtype=object) if meta.task == "classification" else None

    @classmethod
    def load(cls, folder: Path, *, expected_digest: str | None = None) -> BundleModel:
        """Load and verify the bundle in `folder`; ONNX when it passes the parity check, else native."""
        bundle = load_bundle(folder, expected_digest=expected_digest, native=False)
        onnx = OnnxGraph.checked(bundle)
        if onnx is None:
            bundle = load_bundle(folder, expected_digest=expected_digest, native=True)
        return cls(bundle, onnx)

    def get_raw_model(self) -> BundleModel:
        """This model (`PyFuncModel.get_raw_model()` hands it out): its `bundle` and `engine`."""
        return self

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> npt.NDArray[Any]:
        """Class labels (object array) or float64 values, one per row of `model_input`."""
        columns = _columns(model_input, self.bundle)
        if self._onnx is not None:
            output = self._onnx.run(columns)
        else:
            frame = pd.DataFrame(columns, columns=self.bundle.metadata.feature_names())
            model = self.bundle.model
            predicted = model.predict_proba(frame) if self._classes is not None else model.predict(frame)
            output = np.asarray(predicted, dtype=np.float64)
        if self._classes is not None:
            return self._classes[output.argmax(axis=1)]  # type: ignore[no-any-return]
        return output.reshape(-1)


Columns = dict[str, npt.NDArray[Any]]
"""Feature name → one value per row: float64 with NaN, or objects (str, NaN for missing)."""


def _columns(model_input: Any, bundle: ModelBundle) -> Columns:
    """The features as the native pipeline was fitted on them: numbers as float64, categories as
    str; missing values, and absent optional features, as NaN (the serving layer's native feeds)."""
    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    columns: Columns = {}
    for feature in bundle.metadata.features:
        if feature.name not in frame.columns:
            if feature.required:
                raise DataError(f"{bundle.metadata.name}: input has no column {feature.name!r}")
            columns[feature.name] = np.full(len(frame), np.nan)
            continue
        values = frame[feature.name]
        if feature.dtype == "category":
            missing = values.isna().to_numpy()
            text = [np.nan if gone else str(v) for v, gone in zip(values, missing, strict=True)]
            columns[feature.name] = np.asarray(text, dtype=object)
        elif values.dtype == np.float64:  # what MLflow's schema enforcement hands over
            columns[feature.name] = values.to_numpy()
        else:
            try:
                columns[feature.name] = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{bundle.metadata.name}: column {feature.name!r} is not numeric") from exc
    return columns


class OnnxGraph:
    """The bundle's ONNX export in one ONNX Runtime session, fed as `onnx_io.onnx_feeds` lays out."""

    def __init__(self, bundle: ModelBundle) -> None:
        """A session on `bundle.onnx_model` (onnxruntime's own errors propagate)."""
        import onnxruntime as ort

        self._session = ort.InferenceSession(bundle.onnx_model, providers=["CPUExecutionProvider"])
        self._declared = {str(node.name): str(node.type) for node in self._session.get_inputs()}
        self._numeric = np.dtype(numeric_input_dtype(self._declared.values()))
        classify = bundle.metadata.task == "classification"
        self._output = PROBABILITIES_OUTPUT if classify else PREDICTION_OUTPUT

    @classmethod
    def checked(cls, bundle: ModelBundle) -> OnnxGraph | None:
        """The graph when the export converted and matches the reference outputs, else None."""
        meta = bundle.metadata
        if bundle.onnx_model is None or not meta.onnx.converted:
            return None
        rows = meta.reference_rows
        try:
            graph = cls(bundle)
            if not rows:
                return graph
            actual = graph.run(_columns([row["features"] for row in rows], bundle))
        except Exception:  # onnxruntime raises its own error types: the native model serves instead
            return None
        key = "probabilities" if meta.task == "classification" else "prediction"
        expected = np.asarray([row[key] for row in rows], dtype=np.float64).reshape(actual.shape)
        return graph if float(np.max(np.abs(actual - expected))) <= PARITY_TOLERANCE else None

    def run(self, columns: Columns) -> npt.NDArray[np.float64]:
        """Probabilities [N, n_classes] or values [N, 1], as float64."""
        feeds: dict[str, npt.NDArray[Any]] = {}
        for name, kind in self._declared.items():
            values = columns[name]
            if kind == "tensor(string)":
                feed = np.empty(len(values), dtype=object)
                feed[:] = [MISSING_CATEGORY if pd.isna(v) else str(v) for v in values]
            else:
                feed = pd.to_numeric(values).astype(self._numeric) if values.dtype == object else values
                feed = np.asarray(feed, dtype=self._numeric)
            feeds[name] = feed.reshape(-1, 1)
        (result,) = self._session.run([self._output], feeds)
        return np.asarray(result, dtype=np.float64)
