"""Alias history and release events kept in the registry itself: one registered-model tag each.

One tag per entry keeps every value below `MAX_VALUE_CHARS`, far under the 5000-character limit
some backends put on registered-model tags. Keys are `<prefix><seq>.<nonce>`
(`layerops.alias_history.` for alias changes, `layerops.release_event.` for release events): the
zero-padded sequence number orders the entries; the random nonce means two writers that race for
the same number both keep their entry instead of overwriting each other.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from layerops.errors import RepositoryError
from layerops.numbers import parse_natural
from layerops.repository.api import AliasChange, ReleaseEvent

HISTORY_PREFIX = "layerops.alias_history."
EVENT_PREFIX = "layerops.release_event."
MAX_REASON_CHARS = 1000
"""Longer reasons (and event messages) are cut so that an entry always fits in a registry tag."""
MAX_VALUE_CHARS = 4500
"""Most characters one entry's tag value holds: `details` are cut to fit (see `fit_details`)."""
TRUNCATED = "truncated"
"""The key `fit_details` adds (true) to details it had to cut."""


def _sequence(prefix: str, key: str) -> int:
    head = key[len(prefix) :].split(".", 1)[0]
    return parse_natural(head) or 0


def next_key(tags: Mapping[str, str], prefix: str = HISTORY_PREFIX) -> str:
    """A fresh tag key that sorts after every entry under `prefix` in `tags`."""
    last = max((_sequence(prefix, key) for key in tags if key.startswith(prefix)), default=0)
    return f"{prefix}{last + 1:06d}.{secrets.token_hex(3)}"


def _keys(tags: Mapping[str, str], prefix: str) -> list[str]:
    return sorted((key for key in tags if key.startswith(prefix)), key=lambda k: (_sequence(prefix, k), k))


def jsonable(value: Any) -> Any:
    """`value` as strict JSON data: numpy scalars as Python numbers, NaN and infinities as None,
    tuples as lists, mapping keys as text, anything else as its text."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    for method in ("tolist", "item"):  # a numpy array or scalar
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                return jsonable(convert())
            except (TypeError, ValueError):
                pass
    return str(value)


def fit_details(entry: dict[str, Any], limit: int = MAX_VALUE_CHARS) -> str:
    """`entry` as JSON of at most `limit` characters: while too long, the largest key of its
    `details` is dropped and `"truncated": true` added. Never fails on size (the other fields are
    bounded by the callers)."""
    details = dict(jsonable(entry.get("details") or {}))
    text = json.dumps({**entry, "details": details}, sort_keys=True, allow_nan=False)
    while len(text) > limit and any(key != TRUNCATED for key in details):
        largest = max(
            (key for key in details if key != TRUNCATED),
            key=lambda k: (len(json.dumps(details[k], allow_nan=False)), k),
        )
        del details[largest]
        details[TRUNCATED] = True
        text = json.dumps({**entry, "details": details}, sort_keys=True, allow_nan=False)
    return text


def encode(change: AliasChange) -> str:
    """The tag value recording `change` (the model name is implied by the tag's owner)."""
    kind = "rollback" if change.rollback else "remove" if change.version is None else "set"
    entry: dict[str, Any] = {
        "alias": change.alias,
        "version": change.version,
        "previous": change.previous,
        "at": change.at.isoformat(),
        "reason": change.reason[:MAX_REASON_CHARS],
        "kind": kind,
        "forced": change.forced,
        "details": change.details,
    }
    return fit_details(entry)


def decode(name: str, tags: Mapping[str, str]) -> list[AliasChange]:
    """Every recorded alias change of model `name`, oldest first (entries written before `forced`
    and `details` existed decode with `False` and `{}`)."""
    changes = []
    for key in _keys(tags, HISTORY_PREFIX):
        try:
            entry = json.loads(tags[key])
            changes.append(
                AliasChange(
                    name=name,
                    alias=str(entry["alias"]),
                    version=None if entry["version"] is None else int(entry["version"]),
                    previous=None if entry["previous"] is None else int(entry["previous"]),
                    at=datetime.fromisoformat(entry["at"]),
                    reason=str(entry.get("reason", "")),
                    rollback=_is_rollback(entry),
                    forced=bool(entry.get("forced", False)),
                    details=_details(entry),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RepositoryError(f"model {name!r}: alias history tag {key!r} is corrupt ({exc})") from exc
    return changes


def _details(entry: dict[str, Any]) -> dict[str, Any]:
    details = entry.get("details") or {}
    if not isinstance(details, dict):
        raise TypeError(f"details is a {type(details).__name__}, not an object")
    return details


def _is_rollback(entry: dict[str, object]) -> bool:
    if "kind" in entry:
        return entry["kind"] == "rollback"
    return str(entry.get("reason", "")).startswith(ROLLBACK_REASON)  # entries written before "kind"


ROLLBACK_REASON = "rollback from version"
"""How a rollback's reason starts."""


def alias_stack(changes: list[AliasChange], alias: str) -> list[int | None]:
    """The versions `alias` stood on, oldest first, each rollback taking the top one off.

    A rollback returns to the entry below the top, so repeated rollbacks walk back through the
    history (v3 → v2 → v1) instead of swapping the last two. A removal stands on None.
    """
    stack: list[int | None] = []
    for change in (c for c in changes if c.alias == alias):
        if not stack and change.previous is not None:
            stack.append(change.previous)  # the alias was set before its history began
        if change.rollback and stack:
            stack.pop()
        if not stack or stack[-1] != change.version:
            stack.append(change.version)
    return stack


def encode_event(event: ReleaseEvent) -> str:
    """The tag value recording `event` (the model name is implied by the tag's owner)."""
    entry: dict[str, Any] = {
        "kind": event.kind,
        "at": event.at.isoformat(),
        "message": event.message[:MAX_REASON_CHARS],
        "details": event.details,
    }
    return fit_details(entry)


def decode_events(name: str, tags: Mapping[str, str]) -> list[ReleaseEvent]:
    """Every recorded release event of model `name`, oldest first."""
    events = []
    for key in _keys(tags, EVENT_PREFIX):
        try:
            entry = json.loads(tags[key])
            events.append(
                ReleaseEvent(
                    name=name,
                    kind=str(entry["kind"]),
                    at=datetime.fromisoformat(entry["at"]),
                    message=str(entry.get("message", "")),
                    details=_details(entry),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RepositoryError(f"model {name!r}: release event tag {key!r} is corrupt ({exc})") from exc
    return events
