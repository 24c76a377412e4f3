"""Alias history kept in the registry itself: one registered-model tag per change.

One tag per change keeps every value far below the 5000-character limit some backends put on
registered-model tags. Keys are `layerops.alias_history.<seq>.<nonce>`: the zero-padded sequence
number orders the changes; the random nonce means two writers that race for the same number
both keep their entry instead of overwriting each other.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from layerops.errors import RepositoryError
from layerops.numbers import parse_natural
from layerops.repository.api import AliasChange

HISTORY_PREFIX = "layerops.alias_history."
MAX_REASON_CHARS = 1000
"""Longer reasons are cut so that an entry always fits in a registry tag."""


def _sequence(key: str) -> int:
    head = key[len(HISTORY_PREFIX) :].split(".", 1)[0]
    return parse_natural(head) or 0


def next_key(tags: dict[str, str]) -> str:
    """A fresh tag key that sorts after every history entry in `tags`."""
    last = max((_sequence(key) for key in tags if key.startswith(HISTORY_PREFIX)), default=0)
    return f"{HISTORY_PREFIX}{last + 1:06d}.{secrets.token_hex(3)}"


def encode(change: AliasChange) -> str:
    """The tag value recording `change` (the model name is implied by the tag's owner)."""
    return json.dumps(
        {
            "alias": change.alias,
            "version": change.version,
            "previous": change.previous,
            "at": change.at.isoformat(),
            "reason": change.reason[:MAX_REASON_CHARS],
            "kind": "rollback" if change.rollback else "set",
        },
        sort_keys=True,
    )


def decode(name: str, tags: dict[str, str]) -> list[AliasChange]:
    """Every recorded alias change of model `name`, oldest first."""
    keys = sorted((key for key in tags if key.startswith(HISTORY_PREFIX)), key=lambda k: (_sequence(k), k))
    changes = []
    for key in keys:
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
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RepositoryError(f"model {name!r}: alias history tag {key!r} is corrupt ({exc})") from exc
    return changes


def _is_rollback(entry: dict[str, object]) -> bool:
    if "kind" in entry:
        return entry["kind"] == "rollback"
    return str(entry.get("reason", "")).startswith(ROLLBACK_REASON)  # entries written before "kind"


ROLLBACK_REASON = "rollback from version"
"""How a rollback's reason starts."""


def alias_stack(changes: list[AliasChange], alias: str) -> list[int | None]:
    """The versions `alias` stood on, oldest first, each rollback taking the top one off.

    A rollback returns to the entry below the top, so repeated rollbacks walk back through the
    history (v3 → v2 → v1) instead of swapping the last two.
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
