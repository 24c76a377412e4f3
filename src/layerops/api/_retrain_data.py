"""What a retrain trains on: the spec's own source, a file, a DataFrame, or the prediction log.

Each choice gives the spec to train with, the rows (None: the spec's source, read by the training
layer's DataIO) and one line for the version's lineage (`layerops.retrain.data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from layerops.api import _context
from layerops.errors import DataError, LayeropsError
from layerops.spec import DataSpec, PipelineSpec

if TYPE_CHECKING:
    import pandas as pd

    from layerops.monitoring.store import LogStore

MIN_LOG_ROWS = 50
"""Fewest labelled logged rows `from_log` trains on."""


@dataclass(frozen=True)
class TrainingData:
    """The spec to train with, the rows (None: the spec's source) and where they came from."""

    spec: PipelineSpec
    frame: pd.DataFrame | None
    source: str
    """One line for the lineage, e.g. `prediction log of iris since 2026-12-01 08:00:00 UTC (…)`."""


def from_spec(spec: PipelineSpec) -> TrainingData:
    """The spec's own data source (a `SpecError` at training when it names none)."""
    from layerops.training.lineage import describe_source

    return TrainingData(spec, None, describe_source(spec))


def from_file(spec: PipelineSpec, path: str | Path) -> TrainingData:
    """A CSV/Parquet (or JSON) file or http(s) URL in place of the spec's source, read by the
    training layer's DataIO so that the lineage records it and its content hash as for any spec
    source."""
    if "://" in str(path):
        where = str(path)
    else:
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise DataError(f"data file {file} does not exist")
        where = str(file)
    return TrainingData(spec.model_copy(update={"data": DataSpec(path=where)}), None, where)


def from_frame(spec: PipelineSpec, frame: pd.DataFrame) -> TrainingData:
    """An in-memory DataFrame in place of the spec's source."""
    pipeline = spec.model_copy(update={"data": None})
    return TrainingData(pipeline, frame, f"DataFrame of {len(frame):,} rows (layerops.retrain(data=...))")


def from_log(
    spec: PipelineSpec,
    *,
    since: str | datetime,
    home: str | Path | None,
    minimum: int = MIN_LOG_ROWS,
) -> TrainingData:
    """The logged input rows of `spec.name` since `since` joined with their feedback labels (the
    latest label per row wins; rows without one are left out) as a frame with the spec's target.

    Raises a one-line `DataError` when fewer than `minimum` logged rows have a label.
    """
    from layerops.monitoring.records import Window, parse_moment

    start = since if isinstance(since, datetime) else parse_moment(since)
    window = Window(since=start)
    store = _store(home)
    try:
        log = store.read(spec.name, window)
        feedback = store.read_feedback(spec.name) if not log.empty else None
    finally:
        store.close()
    frame = labelled_rows(log, feedback, spec.target)
    where = f"prediction log of {spec.name} {window.describe()}"
    if len(frame) < minimum:
        raise DataError(
            f"only {len(frame):,} of {len(log):,} logged rows of {spec.name} ({window.describe()}) have "
            f"a feedback label: retraining on the log needs at least {minimum}"
        )
    source = f"{where} ({len(frame):,} labelled of {len(log):,} logged rows)"
    return TrainingData(spec.model_copy(update={"data": None}), frame, source)


def labelled_rows(log: pd.DataFrame, feedback: pd.DataFrame | None, target: str) -> pd.DataFrame:
    """The logged inputs (`input.<f>` columns as `<f>`) of the rows that have feedback, with the
    label as column `target`; when a row got several labels the latest `time` wins."""
    import pandas as pd

    from layerops.monitoring.records import INPUT_PREFIX

    inputs = [c for c in log.columns if c.startswith(INPUT_PREFIX)]
    features = [c.removeprefix(INPUT_PREFIX) for c in inputs]
    if feedback is None or feedback.empty or log.empty:
        return pd.DataFrame(columns=[*features, target])
    keys = ["request_id", "row"]
    if "time" in feedback:
        feedback = feedback.sort_values("time", kind="stable")
    latest = feedback.drop_duplicates(keys, keep="last")[[*keys, "label"]]
    rows = log[[*keys, *inputs]].astype({"request_id": str, "row": "int64"})
    joined = rows.merge(
        latest.astype({"request_id": str, "row": "int64"}), on=keys, how="inner", validate="many_to_one"
    )
    joined = joined[joined["label"].notna()]
    frame = joined[inputs].set_axis(features, axis="columns")
    frame[target] = joined["label"].to_numpy()
    return frame.reset_index(drop=True)


def _store(home: str | Path | None) -> LogStore:
    from layerops.monitoring.store import open_store

    settings = _context.settings(home)
    if settings.prediction_log.strip().lower() == "off":
        raise LayeropsError(
            "the prediction log is off (LAYEROPS_PREDICTION_LOG=off): no logged rows to retrain on"
        )
    return open_store(settings.prediction_log, settings.home)
