"""The prediction log's record layout and the window of it a drift check reads.

One logged row per predicted row. A batch handed to a sink is a `pyarrow.Table` with these columns
(and a reader returns a pandas frame with the same ones):

    request_id   string     the request's id (`X-Request-ID`); one request may hold many rows
    row          int32      the row's position in its request (0 for a single-row request)
    time         timestamp[us, tz=UTC]  when the answer was ready
    model        string
    version      int32
    variant      string     the traffic variant (null until releases assign one)
    latency_ms   float64    the request's latency (resolution to prediction, decoding included)
    prediction   string (classification: the label) or float64 (regression: the value)
    proba.<c>    float64    one column per class label `c` (classifiers with probabilities)
    input.<f>    float64 for a numeric feature, string for a categorical one (null = missing)

Feedback (ground truth) is a frame of `request_id` (string), `row` (int32), `label` (string for a
classifier, float64 for a regressor) and `time` (when it was received).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from layerops.errors import LayeropsError

INPUT_PREFIX = "input."
PROBA_PREFIX = "proba."
BASE_COLUMNS = ("request_id", "row", "time", "model", "version", "variant", "latency_ms", "prediction")
FEEDBACK_COLUMNS = ("request_id", "row", "label", "time")


def input_column(feature: str) -> str:
    """The log column of input feature `feature`."""
    return INPUT_PREFIX + feature


def proba_column(label: str) -> str:
    """The log column of the probability of class `label`."""
    return PROBA_PREFIX + label


def features_of(columns: Iterable[str]) -> list[str]:
    """The feature names among log columns, in column order."""
    return [c[len(INPUT_PREFIX) :] for c in columns if c.startswith(INPUT_PREFIX)]


def classes_of(columns: Iterable[str]) -> list[str]:
    """The class labels among log columns, in column order."""
    return [c[len(PROBA_PREFIX) :] for c in columns if c.startswith(PROBA_PREFIX)]


class WindowError(LayeropsError):
    """A window that cannot be read: a bad duration or time range."""


@dataclass(frozen=True)
class Window:
    """Which logged rows to read: the `last` N, those at or after `since` and before `until`."""

    last: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.last is not None and self.last < 1:
            raise WindowError(f"--last must be at least 1 (got {self.last})")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise WindowError(
                f"the window starts ({self.since:%Y-%m-%d %H:%M}) after it ends ({self.until:%Y-%m-%d %H:%M})"
            )

    def describe(self) -> str:
        """A short human description, e.g. `last 1000 rows since 2026-12-03 08:00 UTC`."""
        parts = []
        if self.last is not None:
            parts.append(f"last {self.last} rows")
        if self.since is not None:
            parts.append(f"since {self.since:%Y-%m-%d %H:%M:%S} UTC")
        if self.until is not None:
            parts.append(f"until {self.until:%Y-%m-%d %H:%M:%S} UTC")
        return " ".join(parts) or "every logged row"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `7d`, `1w` → a timedelta; anything else is a `WindowError`."""
    value = text.strip().lower()
    number, unit = value[:-1], value[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) == 0:
        raise WindowError(
            f"bad duration {text!r}: use a positive whole number and a unit s, m, h, d or w (e.g. 2h)"
        )
    return timedelta(seconds=int(number) * _UNITS[unit])


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-12-03T08:00`, a date, or with an offset) as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise WindowError(f"bad time {text!r}: use ISO 8601, e.g. 2026-12-03T08:00 or 2026-12-03") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def since_ago(text: str, *, now: datetime | None = None) -> datetime:
    """The moment a duration such as `2h` before `now` (default: the current time)."""
    return (now or datetime.now(UTC)) - parse_duration(text)


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """A duration back from `now` (`2h`: see `parse_duration`) or an ISO 8601 time (`parse_time`)."""
    stripped = text.strip()
    if stripped[:1].isdigit() and stripped[-1:].isalpha() and "-" not in stripped:
        return since_ago(stripped, now=now)
    return parse_time(stripped)
