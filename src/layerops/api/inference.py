"""`layerops.load`: a registered version as a Python object that predicts labels, like the server.

The model is loaded the way `layerops serve` loads it (the delivery layer's loader: bundle digests
checked, ONNX Runtime where the bundle has a validated export, warm-up, reference rows checked) and
predicts through the same request validator and engine, so a notebook and the endpoint give the
same answers for the same rows.

>>> import pandas as pd, layerops
>>> model = layerops.load("iris")  # the production alias
>>> flowers = pd.DataFrame([
...     {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
...     {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
... ])
>>> model.predict(flowers).tolist()
['setosa', 'virginica']
>>> model.predict_proba(flowers).columns.tolist()
['setosa', 'versicolor', 'virginica']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from layerops.api import _context
from layerops.bundle import BundleMetadata, FeatureSchema, Lineage
from layerops.delivery.engines import EngineOutput
from layerops.delivery.feeds import Feeds
from layerops.delivery.models import ModelLoader, ServedModel
from layerops.delivery.settings import ModelRef, ServeSettings
from layerops.errors import InputError

Rows = pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""What `predict` takes: a DataFrame, one row as a mapping, or a list of row mappings."""


@dataclass(frozen=True, eq=False)
class Model:
    """One loaded model version. Build it with `layerops.load`."""

    served: ServedModel

    @property
    def name(self) -> str:
        """The registered model name."""
        return self.served.name

    @property
    def version(self) -> int:
        """The registered version number."""
        return self.served.version

    @property
    def engine(self) -> str:
        """`onnx` or `native`: what computes the predictions."""
        return self.served.engine.name

    @property
    def metadata(self) -> BundleMetadata:
        """Everything the bundle records: task, classes, metrics, latency, schema, lineage."""
        return self.served.metadata

    @property
    def schema(self) -> list[FeatureSchema]:
        """The input features: name, dtype, whether required, allowed categories, observed range."""
        return list(self.served.metadata.features)

    @property
    def lineage(self) -> Lineage:
        """What the version was made from: data and spec hashes, seed, git commit, library versions."""
        return self.served.metadata.lineage

    @property
    def classes(self) -> list[str] | None:
        """Class labels in probability-column order (None for a regressor)."""
        return self.served.metadata.classes

    def predict(self, rows: Rows) -> npt.NDArray[Any]:
        """Labels for a classifier (e.g. `'setosa'`), values for a regressor; one per row.

        Missing values (NaN, None) are allowed where the schema allows them; a bad value raises
        `layerops.errors.InputError` naming the row and the field, as the server's 422 does.
        """
        output = self._run(rows)
        if self.classes:
            return np.asarray(self.classes, dtype=object)[np.asarray(output.values, dtype=np.intp)]
        return np.asarray(output.values, dtype=np.float64)

    def predict_proba(self, rows: Rows) -> pd.DataFrame:
        """Class probabilities, one column per class label, indexed like `rows` when a DataFrame."""
        if not self.classes:
            raise InputError(f"{self.name} is a regressor: it has no class probabilities")
        output = self._run(rows)
        index = rows.index if isinstance(rows, pd.DataFrame) else None
        return pd.DataFrame(output.probabilities, columns=list(self.classes), index=index)

    def _run(self, rows: Rows) -> EngineOutput:
        return self.served.engine.predict_columns(self._feeds(rows).columns)

    def _feeds(self, rows: Rows) -> Feeds:
        validator = self.served.validator
        if isinstance(rows, pd.DataFrame):
            if rows.empty:
                raise InputError("no rows: the DataFrame is empty")
            wanted = set(validator.names)
            return validator.column_feeds({str(n): _column(rows[n]) for n in rows.columns if n in wanted})
        payload = [dict(r) for r in rows] if not isinstance(rows, Mapping) else dict(rows)
        return validator.row_feeds(payload)

    def __repr__(self) -> str:
        return f"<layerops.Model {self.name} v{self.version} ({self.metadata.task}, {self.engine})>"


def load(
    ref: str,
    *,
    engine: Literal["auto", "onnx", "native"] = "auto",
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> Model:
    """Load a registered version: `"iris"` (its production alias), `"iris@staging"`, `"iris@3"`.

    `engine="auto"` uses ONNX Runtime where the bundle carries a validated export and the native
    scikit-learn pipeline otherwise; `"native"` always loads the pipeline.
    """
    model_ref = parse_ref(ref)
    base = _context.settings(home, tracking_uri)
    settings = ServeSettings(
        home=base.home,
        tracking_uri=base.tracking_uri,
        registry_uri=base.registry_uri,
        artifact_root=base.artifact_root,
        engine=engine,
        extra_fields="ignore",  # a notebook's frame often still holds the target or ids
        max_batch_rows=2**62,  # one call scores a whole frame
        max_fields=2**31,
    )
    loader = ModelLoader(_context.repository(home, tracking_uri, create=False), settings)
    return Model(loader.load(model_ref.name, model_ref.ref))


def _column(series: pd.Series) -> list[Any]:
    """A column as Python values (what JSON would carry), None where missing (NaN, NA, NaT)."""
    values = series.tolist()  # numpy scalars become Python ones
    for index in np.flatnonzero(series.isna().to_numpy()):
        values[index] = None
    return values


def parse_ref(ref: str) -> ModelRef:
    """`NAME`, `NAME@ALIAS` or `NAME@VERSION` (an `InputError` otherwise)."""
    try:
        return ModelRef.parse(ref)
    except ValueError as exc:
        raise InputError(str(exc)) from None
