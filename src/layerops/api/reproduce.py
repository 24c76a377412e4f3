"""`layerops.reproduce`: rebuild a registered version from its recorded lineage.

The lineage holds the spec's content, the data source and its content hash, the seed and the
library versions. Reproducing reads the same source, refuses to train when its content hash
differs (the data changed), trains the same spec with the same seed and registers the result
as a new version; with the same libraries its predictions and its ONNX export are identical.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from layerops.api import _context
from layerops.api.inference import parse_ref
from layerops.api.training import TrainResult, result_of
from layerops.bundle import Lineage
from layerops.errors import SpecError
from layerops.spec import PipelineSpec, parse_spec
from layerops.training.pipeline import Reporter


def reproduce(
    ref: str,
    *,
    data: pd.DataFrame | None = None,
    register: bool = True,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    reporter: Reporter | None = None,
    jobs: int | None = None,
) -> TrainResult:
    """Train version `ref` (`"iris@3"`, `"iris@production"`) again from its lineage.

    `data` is needed only for a version trained on an in-memory DataFrame (or a SQL source whose
    credentials were, rightly, not recorded); its content hash must match the recorded one.
    Raises `DataError` when the data changed, `SpecError` when the version recorded no spec.
    `jobs`: as for `layerops.train`.
    """
    from layerops.training.pipeline import train as run_training

    model_ref = parse_ref(ref)
    repository = _context.repository(home, tracking_uri, create=False)
    number = model_ref.version
    entry = (
        repository.get_version(model_ref.name, number)
        if number is not None
        else repository.resolve_alias(model_ref.name, model_ref.ref)
    )
    lineage = repository.load_bundle(model_ref.name, entry.version, native=False).metadata.lineage
    where = f"{model_ref.name} v{entry.version}"
    spec = recorded_spec(lineage, where, with_data=data is not None)
    result = run_training(
        spec,
        repository if register else None,
        reporter=reporter,
        data=data,
        expect_sha256=lineage.dataset_sha256,
        jobs=jobs,
    )
    return result_of(spec, result)


def recorded_spec(lineage: Lineage, where: str, *, with_data: bool) -> PipelineSpec:
    """The spec a version was trained with, its data path resolving to the recorded source."""
    if not lineage.spec:
        raise SpecError(
            f"{where} was registered before layerops recorded the spec's content; it cannot be rebuilt"
        )
    raw = dict(lineage.spec)
    if with_data:
        raw["data"] = None
        return parse_spec(raw, source=f"{where} lineage")
    source = raw.get("data")
    if source is None:
        raise SpecError(f"{where} was trained on an in-memory DataFrame: pass the same rows as data=")
    sql = source.get("sql") or {}
    if "***@" in str(sql.get("url", "")):
        raise SpecError(f"{where} read SQL whose URL credentials are not recorded: pass the rows as data=")
    return parse_spec(
        raw, base_dir=_base_dir(source.get("path"), lineage.data_source), source=f"{where} lineage"
    )


def _base_dir(path: str | None, recorded: str) -> Path:
    """The folder against which the spec's relative `path` gives the recorded absolute source."""
    if path is None or "://" in path or Path(path).is_absolute():
        return Path.cwd()
    return Path(recorded).parents[len(Path(path).parts) - 1]
