"""`layerops.batch_predict`: score a CSV or Parquet input with a registered version, into a folder
of Parquet files, in this process or on a Dask cluster.

The version is loaded as `layerops serve` loads it (the bundle's digest checked; ONNX Runtime
where its export matches the native outputs, else the native pipeline; never a pickle read
from storage), from the local bundle cache when a verified copy is there (no MLflow import on
the embedded repository).

>>> import layerops
>>> summary = layerops.batch_predict("iris", "flowers.csv", "scored/")  # doctest: +SKIP
>>> summary.rows_scored, summary.rows_rejected, summary.partitions_written  # doctest: +SKIP
(150, 0, 1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from layerops.api import _context
from layerops.api.inference import parse_ref
from layerops.batch import (
    DEFAULT_PARTITION_ROWS,
    BatchJob,
    BatchSummary,
    ScoringModel,
    dask_client,
    parse_address,
    prepare,
)
from layerops.batch.runner import ProgressCallback
from layerops.batch.scoring import Scorer
from layerops.numbers import parse_natural


def batch_predict(  # noqa: PLR0913 - keyword-only options of a public function
    ref: str,
    input: str | Path,
    output: str | Path,
    *,
    dask: str | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    keep: Sequence[str] | None = None,
    overwrite: bool = False,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    progress: ProgressCallback | None = None,
) -> BatchSummary:
    """Score `input` (a CSV/Parquet file or a folder of them; a path or `s3://` URL) with `ref`
    (`"iris"`: its production alias, `"iris@staging"`, `"iris@3"`) into the folder `output`.

    `dask`: `"local:N"` (N worker processes here) or a scheduler address; None scores in this
    process. `keep`: the input columns copied into the output (default: all). A rerun into the
    same folder skips the partitions already written; one with another model version or input
    is refused unless `overwrite`. Bad rows go to `output/_rejects/` with their reasons.
    """
    if dask is not None:
        parse_address(dask)  # a malformed address fails before the model loads
    model, scorer = load_scoring_model(ref, home=home, tracking_uri=tracking_uri)
    job = BatchJob(
        model, str(input), str(output), partition_rows=partition_rows, keep=keep, overwrite=overwrite
    )
    cluster = dask_client(dask) if dask is not None else contextlib.nullcontext(None)
    with cluster as client:
        return job.run(scorer, client=client, progress=progress)


def load_scoring_model(
    ref: str, *, home: str | Path | None = None, tracking_uri: str | None = None
) -> tuple[ScoringModel, Scorer]:
    """The version `ref` names, checked and ready to score (and to ship to Dask workers)."""
    from layerops.repository.factory import load_bundle_quickly

    model_ref = parse_ref(ref)
    reader = _context.reader(home, tracking_uri)
    number = parse_natural(model_ref.ref)
    entry = (
        reader.get_version(model_ref.name, number)
        if number is not None
        else reader.resolve_alias(model_ref.name, model_ref.ref)
    )
    settings = _context.settings(home, tracking_uri)
    bundle = load_bundle_quickly(settings, entry.name, entry.version, native=False)
    return prepare(
        bundle,
        entry.name,
        entry.version,
        native=lambda: load_bundle_quickly(settings, entry.name, entry.version, native=True),
    )
