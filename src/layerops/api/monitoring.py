"""Monitoring from a notebook or the CLI: drift over a window of the prediction log, feedback.

    report = layerops.drift("shipping", since="2h")
    report.drifted, report.drifted_features()      # (True, ['weight', 'service_level'])
    layerops.feedback("shipping", "labels.csv").stored

The log is the one the server writes (`LAYEROPS_PREDICTION_LOG`, default Parquet files under
`<home>/predictions`); `log=` names another.
"""

from __future__ import annotations

import importlib
import math
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerops.api import _context
from layerops.errors import DataError, LayeropsError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from layerops.bundle import ModelBundle
    from layerops.monitoring.feedback import FeedbackResult
    from layerops.monitoring.records import Window
    from layerops.monitoring.results import DriftReport
    from layerops.monitoring.store import LogStore
    from layerops.repository.api import RegistryReader

__all__ = ["drift", "feedback", "read_log"]


def _store(log: str | None, home: str | Path | None) -> LogStore:
    from layerops.monitoring.store import open_store

    settings = _context.settings(home)
    target = settings.prediction_log if log is None else log
    if target.strip().lower() == "off":
        raise LayeropsError("the prediction log is off (LAYEROPS_PREDICTION_LOG=off): nothing to read")
    return open_store(target, settings.home)


def _window(last: int | None, since: str | datetime | None, until: str | datetime | None) -> Window:
    from layerops.monitoring.records import Window, parse_moment, parse_time

    start = since if isinstance(since, datetime) or since is None else parse_moment(since)
    end = until if isinstance(until, datetime) or until is None else parse_time(until)
    return Window(last=last, since=start, until=end)


def read_log(
    name: str,
    *,
    last: int | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    log: str | None = None,
    home: str | Path | None = None,
) -> pd.DataFrame:
    """Logged predictions of `name` in the window (columns as in `layerops.monitoring.records`)."""
    store = _store(log, home)
    try:
        return store.read(name, _window(last, since, until))
    finally:
        store.close()


def drift(  # noqa: PLR0913 - the window's three bounds, where to look, and the report's shape
    name: str,
    *,
    version: int | None = None,
    last: int | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    slices: int = 10,
    log: str | None = None,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> DriftReport:
    """Drift of the logged predictions of `name` against its training reference.

    The window is the `last` N rows and/or those `since` (a duration such as `2h`, or a time) and
    before `until`. `version` defaults to the version of the most recent logged row; rows of other
    versions are left out (each version has its own reference). Raises a one-line `LayeropsError`
    when there is no log, too few rows, or a bundle without a reference profile.
    """
    # scipy (the tests) imports while the log is read: reading is pyarrow's C++, off the GIL.
    tests = preload("layerops.monitoring.drift", "layerops.monitoring.performance")
    window = _window(last, since, until)
    store = _store(log, home)
    try:
        frame = store.read(name, window)
        tests.join()
        from layerops.monitoring.drift import DriftDetector
        from layerops.monitoring.performance import performance

        if frame.empty:
            raise NotFoundError(f"no logged predictions of model {name!r} ({window.describe()}) in {store!r}")
        chosen = int(frame["version"].iloc[frame["time"].to_numpy().argmax()]) if version is None else version
        frame = frame[frame["version"] == chosen].reset_index(drop=True)
        bundle = _bundle(name, chosen, home, tracking_uri)
        minimum = bundle.metadata.monitoring.min_rows
        if len(frame) < minimum:
            raise DataError(
                f"only {len(frame)} logged rows of {name} v{chosen} ({window.describe()}): "
                f"drift tests need at least {minimum} (monitoring.min_rows)"
            )
        report = (
            DriftDetector()
            .fit(bundle.metadata, bundle.reference)
            .score(frame, window=window.describe(), slices=slices)
        )
        feedback_frame = store.read_feedback(name)
        quality = performance(bundle.metadata, frame, feedback_frame, slices=slices)
    finally:
        store.close()
    return replace(report, performance=quality)


def feedback(
    name: str,
    labels: str | Path | pd.DataFrame,
    *,
    version: int | None = None,
    log: str | None = None,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> FeedbackResult:
    """Store ground truth that arrived late: a CSV/Parquet file (or frame) of `request_id`,
    `label` and optionally `row`. Labels are checked against `version` (default: the production
    alias, else the latest version); valid rows are stored even when others are refused."""
    from layerops.monitoring.feedback import record_feedback

    frame = _labels_frame(labels)
    number = version if version is not None else _default_version(_context.reader(home, tracking_uri), name)
    metadata = _bundle(name, number, home, tracking_uri).metadata
    items = [
        {k: plain for k, v in row.items() if (plain := _plain(v)) is not None or k != "row"}
        for row in frame.to_dict(orient="records")
    ]
    store = _store(log, home)
    try:
        return record_feedback(store, metadata, items)
    finally:
        store.close()


def preload(*modules: str) -> threading.Thread:
    """Start importing `modules` in a thread (join it before using them): imports that overlap I/O."""

    def load() -> None:
        for module in modules:
            importlib.import_module(module)

    thread = threading.Thread(target=load, name="layerops-import", daemon=True)
    thread.start()
    return thread


def _bundle(name: str, version: int, home: str | Path | None, tracking_uri: str | None) -> ModelBundle:
    from layerops.repository.factory import load_bundle_quickly

    return load_bundle_quickly(_context.settings(home, tracking_uri), name, version)


def _labels_frame(labels: str | Path | pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    if isinstance(labels, pd.DataFrame):
        frame = labels
    else:
        path = Path(labels)
        if not path.is_file():
            raise NotFoundError(f"feedback file {path} does not exist")
        try:
            frame = (
                pd.read_parquet(path)
                if path.suffix.lower() in {".parquet", ".pq"}
                else pd.read_csv(path, dtype={"request_id": str})
            )
        except Exception as exc:  # pandas and pyarrow raise many types for an unreadable file
            raise DataError(f"cannot read feedback file {path}: {exc}") from exc
    missing = [column for column in ("request_id", "label") if column not in frame.columns]
    if missing:
        raise DataError(
            "feedback needs the columns request_id and label (and optionally row); "
            f"missing: {', '.join(missing)}"
        )
    extra = sorted(set(map(str, frame.columns)) - {"request_id", "label", "row"})
    if extra:
        raise DataError(f"feedback has unknown column(s) {', '.join(extra)}: use request_id, label and row")
    return frame


def _default_version(repository: RegistryReader, name: str) -> int:
    try:
        return repository.resolve_alias(name, "production").version
    except NotFoundError:
        versions = repository.list_versions(name)
        if not versions:
            raise
        return max(v.version for v in versions)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, NaN as None (a missing label is refused by name)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
