"""One partition's work: check its rows, score the good ones, write them and the rejects.

The same functions run in this process and as a Dask task (`score_on_worker`): their arguments
are data (the `ScoringModel`, a partition's rows or a Parquet run to read, a `Plan`), and the
task writes its own output files, so a worker returns only counts.

Output columns, in order: `row_number` (the input row, 0-based), the kept input columns (the
model's numeric features typed as numbers even when read from text), `prediction` (the class
label, or the value for a regressor), `proba.<class>` per class (classifiers; the prediction
log's names), `model_name`, `model_version`. Rejects: `row_number`, `reason`, then the row's
input columns as they were read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from layerops.batch.output import with_footer, write_partition
from layerops.batch.partition import Partition
from layerops.batch.scoring import Output, Scorer, ScoringModel, worker_scorer
from layerops.batch.sources import Unit
from layerops.batch.validation import Checked
from layerops.bundle import BundleMetadata
from layerops.errors import DataError

ROW_NUMBER = "row_number"
PREDICTION = "prediction"
PROBABILITY_PREFIX = "proba."
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
REASON = "reason"
_NUMBER_TYPES = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}


@dataclass(frozen=True)
class Plan:
    """What every partition's task needs besides the model and the rows."""

    output: str
    """The output folder: an absolute path or an `s3://` URL (what a worker can resolve)."""
    keep: tuple[str, ...] | None
    """Input columns copied into the output (None: every column)."""


@dataclass(frozen=True)
class PartitionResult:
    """What a partition's task did."""

    index: int
    scored: int
    rejected: int


@dataclass(frozen=True)
class Scored:
    """A partition's output, ready to write."""

    result: PartitionResult
    table: pa.Table
    rejects: pa.Table | None


def output_columns(metadata: BundleMetadata) -> list[str]:
    """The columns batch-predict adds to the kept input columns."""
    probabilities = [f"{PROBABILITY_PREFIX}{label}" for label in metadata.classes or []]
    return [ROW_NUMBER, PREDICTION, *probabilities, MODEL_NAME, MODEL_VERSION]


def check_names(metadata: BundleMetadata, kept: Sequence[str], read: Sequence[str], where: str) -> None:
    """Refuse input columns whose names the output or the rejects already use."""
    clashes = [name for name in kept if name in set(output_columns(metadata))]
    clashes += [name for name in read if name in (ROW_NUMBER, REASON) and name not in clashes]
    if clashes:
        raise DataError(
            f"{where}: column {clashes[0]!r} has the name of a column batch-predict writes; "
            "leave it out with --keep (or rename it)"
        )


def score_partition(scorer: Scorer, model: ScoringModel, partition: Partition, plan: Plan) -> PartitionResult:
    """Check, score and write one partition (its rejects first, then its part)."""
    return write(score(scorer, model, partition, plan.keep), plan)


def score(scorer: Scorer, model: ScoringModel, partition: Partition, keep: tuple[str, ...] | None) -> Scored:
    """Check a partition's rows and score the good ones: its output tables, not yet written."""
    checked = model.checker.check(partition.table)
    rows = checked.rows - checked.rejected
    empty = Output(np.zeros(0, dtype=np.int64), np.zeros((0, len(model.metadata.classes or []))))
    output = scorer.predict(checked.valid_values()) if rows else empty
    footer = {
        "partition": partition.index,
        "model": model.name,
        "version": model.version,
        "engine": model.engine,
        "file": partition.file,
        "first_row": partition.first_row,
        "scored": rows,
        "rejected": checked.rejected,
    }
    scored = with_footer(_scored(model, partition, checked, output, keep), footer)
    rejects = _rejects(partition, checked) if checked.rejected else None
    return Scored(PartitionResult(partition.index, rows, checked.rejected), scored, rejects)


def write(scored: Scored, plan: Plan) -> PartitionResult:
    """Write a scored partition's rejects (if any), then its part."""
    write_partition(plan.output, scored.result.index, scored.table, scored.rejects)
    return scored.result


def score_on_worker(
    model: ScoringModel, unit: Unit, plan: Plan, skip: frozenset[int] = frozenset()
) -> list[PartitionResult]:
    """A Dask task: score a CSV partition, or read and score a Parquet run's partitions (those in
    `skip` are already written), with the worker's cached scorer for `model`."""
    scorer = worker_scorer(model)
    partitions = [unit] if isinstance(unit, Partition) else unit.partitions(skip=skip)
    return [score_partition(scorer, model, partition, plan) for partition in partitions]


def warm_worker(model: ScoringModel) -> None:
    """Build the worker's scorer for `model` ahead of its first partition (`Client.run`)."""
    worker_scorer(model)


def _scored(
    model: ScoringModel, partition: Partition, checked: Checked, output: Output, keep: tuple[str, ...] | None
) -> pa.Table:
    good = checked.valid if checked.rejected else None
    mask = None if good is None else pa.array(good)
    numbers = pa.array(np.arange(partition.first_row, partition.first_row + checked.rows, dtype=np.int64))
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        ROW_NUMBER: numbers if mask is None else numbers.filter(mask)
    }
    table = partition.table
    numeric = {f.name: _NUMBER_TYPES[f.dtype] for f in model.metadata.features if f.dtype != "category"}
    for name in keep if keep is not None else table.column_names:
        if name not in table.column_names:
            continue
        column = table.column(name)
        if name in numeric and pa.types.is_string(column.type):  # a CSV's text: the parsed numbers
            values = checked.values[name] if good is None else checked.values[name][good]
            columns[name] = pa.array(values, from_pandas=True).cast(numeric[name])
        else:
            columns[name] = column if mask is None else column.filter(mask)
    return pa.table({**columns, **_model_columns(model, output)})


def _model_columns(model: ScoringModel, output: Output) -> dict[str, pa.Array]:
    """`prediction`, `proba.<class>` (classifiers), `model_name` and `model_version`."""
    classes = model.metadata.classes
    columns: dict[str, pa.Array] = {}
    if classes and output.probabilities is not None:
        columns[PREDICTION] = pc.take(pa.array(classes, pa.string()), pa.array(output.values, pa.int64()))
        for position, label in enumerate(classes):
            columns[f"{PROBABILITY_PREFIX}{label}"] = pa.array(output.probabilities[:, position])
    else:
        columns[PREDICTION] = pa.array(output.values, pa.float64())
    rows = len(output.values)
    columns[MODEL_NAME] = pa.repeat(pa.scalar(model.name, pa.string()), rows)
    columns[MODEL_VERSION] = pa.repeat(pa.scalar(model.version, pa.int64()), rows)
    return columns


def _rejects(partition: Partition, checked: Checked) -> pa.Table:
    bad = ~checked.valid
    table = partition.table.filter(pa.array(bad))
    first = partition.first_row
    numbers = np.flatnonzero(bad).astype(np.int64) + first
    return pa.table(
        {
            ROW_NUMBER: pa.array(numbers),
            REASON: pa.array(checked.reasons[bad].tolist(), pa.string()),
            **{name: table.column(name) for name in table.column_names},
        }
    )
