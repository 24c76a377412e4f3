"""Assigning a request to a variant: a stable hash of its key, then a split of [0, 100).

`bucket(model, key)` places a key at a point in [0, 100) that is the same on every process,
machine and Python run (BLAKE2b, never Python's salted `hash()`), so a sticky user keeps their
variant across replicas and restarts. A `Split` cuts [0, 100) into consecutive ranges, one per
variant, in the order of its weights: a variant owns `[sum of the weights before it, + its
weight)`. The canary is the last variant of a canary policy's weights, so it owns the top of the
range, `[100 - share, 100)`: raising its share only moves keys from the baseline to the canary,
never back (a key on the canary at 5 % stays on it at 25 %).
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

_TOP = math.nextafter(100.0, 0.0)
"""The largest float below 100: where a point that rounds up to 100 is put back."""
_TOLERANCE = 1e-6
"""How far from 100 the weights may sum (floats from YAML or JSON)."""


def bucket(model: str, key: str) -> float:
    """The point in [0, 100) of `key` for `model`: stable everywhere, independent per model."""
    data = f"{model}\0{key}".encode("utf-8", "surrogatepass")
    number = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
    # the top 53 bits fit a float's mantissa exactly: the point is uniform on a 2**-53 grid
    return min((number >> 11) * (100.0 / 2**53), _TOP)


@dataclass(frozen=True, slots=True)
class Split:
    """Variants and their cumulative bounds over [0, 100), made once per weights change.

    `choose(point)` is a binary search over a few bounds (well under a microsecond). Variants of
    weight 0 are dropped: they are never chosen.
    """

    weights: tuple[tuple[str, float], ...]
    """Every variant and its percent, as given (zero weights included)."""
    names: tuple[str, ...]
    """The variants with a positive weight, in order."""
    bounds: tuple[float, ...]
    """The exclusive upper bound of each name's range; the last is +inf (absorbs rounding)."""

    @classmethod
    def of(cls, weights: Sequence[tuple[str, float]]) -> Split:
        """The split of `weights` (variant → percent, summing to 100). Raises `ValueError` when a
        weight is negative or not finite, or the weights do not sum to 100."""
        total = 0.0
        names: list[str] = []
        bounds: list[float] = []
        for name, weight in weights:
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"variant {name!r}: weight {weight} is not a percent")
            total += weight
            if weight > 0:
                names.append(name)
                bounds.append(total)
        if abs(total - 100.0) > _TOLERANCE:
            raise ValueError(f"weights sum to {total:g}, not 100")
        bounds[-1] = math.inf
        return cls(tuple((str(n), float(w)) for n, w in weights), tuple(names), tuple(bounds))

    def choose(self, point: float) -> str:
        """The variant whose range holds `point` (in [0, 100); values outside clamp to an end)."""
        return self.names[bisect_right(self.bounds, point)]


def choose(weights: Sequence[tuple[str, float]], point: float) -> str:
    """The variant of `weights` whose cumulative range holds `point` in [0, 100); a variant of
    weight 0 is never chosen. Builds a `Split` each call: on a hot path, keep the `Split`."""
    return Split.of(weights).choose(point)
