"""Batch scoring: a registered model over a CSV or Parquet input, partition by partition, into
partitioned Parquet; in this process or on a Dask cluster; resumable after a crash.

`prepare` turns a loaded bundle into a `ScoringModel` (ONNX Runtime where the export is
validated, else the native pipeline); a `BatchJob` checks an input and prepares an output folder
for it, then `run`s, here or on the Dask cluster `dask_client` opens. The Python API
(`layerops.batch_predict`) composes them with the repository.
"""

from layerops.batch.cluster import dask_client, parse_address
from layerops.batch.runner import DEFAULT_PARTITION_ROWS, BatchJob, BatchProgress, BatchSummary
from layerops.batch.scoring import ScoringModel, prepare

__all__ = [
    "DEFAULT_PARTITION_ROWS",
    "BatchJob",
    "BatchProgress",
    "BatchSummary",
    "ScoringModel",
    "dask_client",
    "parse_address",
    "prepare",
]
