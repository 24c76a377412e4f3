"""Ground truth for logged predictions: check each item, store the valid ones, report the rest.

An item names a logged request (`request_id`, and `row` for a request of several rows, default 0)
and its true `label`: one of the model's classes for a classifier (text, or a whole number whose
text is a class), a finite number for a regressor. A batch is never all-or-nothing: valid items
are stored even when others are refused, and each refusal names its item and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from layerops.bundle import BundleMetadata
from layerops.monitoring.store import LogStore

MAX_ITEMS = 100_000
"""Most feedback items one call may carry."""


@dataclass(frozen=True)
class Rejected:
    """A feedback item that was not stored, and why."""

    index: int
    """Its position in the batch (or the file's row number)."""
    request_id: str | None
    reason: str


@dataclass
class FeedbackResult:
    """What a feedback call stored and what it refused."""

    stored: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer of the feedback route."""
        return {
            "stored": self.stored,
            "rejected": [
                {"index": r.index, "request_id": r.request_id, "reason": r.reason} for r in self.rejected
            ],
        }


@dataclass(frozen=True)
class _Item:
    index: int
    request_id: str
    row: int
    label: str | float


def record_feedback(
    store: LogStore,
    metadata: BundleMetadata,
    items: Sequence[Any],
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FeedbackResult:
    """Check `items` (dicts from JSON or a file) against `metadata` and the log; store the valid ones."""
    result = FeedbackResult()
    if len(items) > MAX_ITEMS:
        raise ValueError(f"at most {MAX_ITEMS:,} feedback items per call, got {len(items):,}")
    valid: list[_Item] = []
    for index, raw in enumerate(items):
        item, reason = _check(index, raw, metadata)
        if item is None:
            result.rejected.append(Rejected(index, _request_id_of(raw), reason))
        else:
            valid.append(item)
    known = store.find_requests(metadata.name, {item.request_id for item in valid}) if valid else set()
    kept = []
    for item in valid:
        if item.request_id in known:
            kept.append(item)
        else:
            reason = f"request id {item.request_id!r} has no logged prediction of model {metadata.name!r}"
            result.rejected.append(Rejected(item.index, item.request_id, reason))
    if kept:
        store.write_feedback(metadata.name, _frame(kept, metadata, now()))
    result.stored = len(kept)
    result.rejected.sort(key=lambda r: r.index)
    return result


def _frame(items: list[_Item], metadata: BundleMetadata, received: datetime) -> pd.DataFrame:
    labels: pd.Series[Any] = (
        pd.Series([item.label for item in items], dtype=object)
        if metadata.task == "classification"
        else pd.Series([item.label for item in items], dtype="float64")
    )
    return pd.DataFrame(
        {
            "request_id": pd.Series([item.request_id for item in items], dtype=object),
            "row": pd.Series([item.row for item in items], dtype="int32"),
            "label": labels,
            "time": pd.Series([received] * len(items), dtype="datetime64[us, UTC]"),
        }
    )


def _request_id_of(raw: Any) -> str | None:
    value = raw.get("request_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _check(index: int, raw: Any, metadata: BundleMetadata) -> tuple[_Item | None, str]:
    if not isinstance(raw, dict):
        return None, "a feedback item is an object with request_id and label"
    extra = sorted(set(raw) - {"request_id", "row", "label"})
    if extra:
        return None, f"unknown field(s) {', '.join(map(repr, extra))}: an item has request_id, label and row"
    request_id = raw.get("request_id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
        return None, "request_id must be a non-empty string of at most 128 characters"
    row = raw.get("row", 0)
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        return None, "row must be a whole number >= 0 (the row's position in its request)"
    if "label" not in raw or raw["label"] is None:
        return None, "label is missing"
    label, reason = _label(raw["label"], metadata)
    if label is None:
        return None, reason
    return _Item(index, request_id, row, label), ""


def _label(value: Any, metadata: BundleMetadata) -> tuple[str | float | None, str]:
    if metadata.task == "classification":
        return _class_label(value, metadata.classes or [])
    if isinstance(value, bool) or not isinstance(value, int | float):
        return (
            None,
            f"label must be a number for regression model {metadata.name!r}, got {type(value).__name__}",
        )
    number = float(value)
    if not math.isfinite(number):
        return None, "label must be a finite number"
    return number, ""


def _class_label(value: Any, classes: Collection[str]) -> tuple[str | None, str]:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        return None, f"label must be one of the classes ({_listed(classes)}), got {value!r}"
    if isinstance(value, int | float):
        value = str(int(value))
    if not isinstance(value, str):
        return None, f"label must be a class name (text), got {type(value).__name__}"
    if value not in classes:
        return None, f"label {value!r} is not a class of the model ({_listed(classes)})"
    return value, ""


def _listed(classes: Collection[str], most: int = 10) -> str:
    shown = list(classes)[:most]
    more = len(classes) - len(shown)
    return ", ".join(shown) + (f", … {more} more" if more > 0 else "")
