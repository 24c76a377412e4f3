"""The one way layerops reads a whole number from text (versions, lengths, counts).

`str.isdigit()` accepts superscripts and other Unicode digits that `int()` refuses (`'¹'`), and
`int()` accepts what no HTTP peer should send (`'٣'`, `' 3'`, `'1_000'`). Every version number,
header length and counter in a path, query, header, tag or setting is read here: ASCII digits
only, at most 18 of them (so the value fits an int64 and parsing is never quadratic).
"""

from __future__ import annotations

import re

_NATURAL = re.compile(r"[0-9]{1,18}")
_NATURAL_BYTES = re.compile(rb"[0-9]{1,18}")


def parse_natural(text: str | bytes | None) -> int | None:
    """The non-negative integer `text` spells in ASCII digits, else None (never raises)."""
    if text is None:
        return None
    if isinstance(text, bytes):
        return int(text) if _NATURAL_BYTES.fullmatch(text) else None
    return int(text) if _NATURAL.fullmatch(text) else None


def is_natural(text: str | bytes | None) -> bool:
    """Whether `text` is a non-negative integer in ASCII digits (as `parse_natural` reads it)."""
    return parse_natural(text) is not None
