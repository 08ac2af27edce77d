"""Renters' results as counts per band: the only form in which a track record shows them.

A band is a fixed interval [low, high) of a figure (a return in %, a drawdown in %, a number
of fills). Bands holding fewer than BAND_MIN_RENTERS renters are merged with their neighbours,
so no band points at one or two renters. The output depends on each renter only through the
fixed band their figure falls in: whoever knows every other renter's figure learns at most
that band, never a value inside it (docs/track-records.md).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

BAND_MIN_RENTERS = 3


@dataclass(frozen=True)
class Scale:
    """Fixed band edges from a floor (None: unbounded below) up, the last band unbounded."""

    floor: Decimal | None
    edges: tuple[Decimal, ...]


def scale(floor: int | None, *edges: int) -> Scale:
    return Scale(None if floor is None else Decimal(floor), tuple(Decimal(e) for e in edges))


# Wide on purpose: what an attacker who controls every other renter can learn of the last one
# is the band its figure falls in.
RETURN_PCT = scale(None, -25, -10, -5, 0, 5, 10, 25)
DRAWDOWN_PCT = scale(0, 5, 10, 25, 50)
# A counted renter has at least one fill.
FILLS = scale(1, 5, 10, 25, 100)


@dataclass(frozen=True)
class Band:
    low: Decimal | None  # inclusive; None: unbounded
    high: Decimal | None  # exclusive; None: unbounded
    renters: int


def bands(values: Sequence[Decimal], scale: Scale) -> list[Band]:
    """The values counted per band of the scale, each band with fewer than BAND_MIN_RENTERS
    merged into the next, and a short last one into the band before it. Needs at least
    BAND_MIN_RENTERS values."""
    if len(values) < BAND_MIN_RENTERS:
        raise ValueError(f"bands need at least {BAND_MIN_RENTERS} values")
    edges = scale.edges
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_right(edges, value)] += 1
    merged: list[Band] = []
    low, count = scale.floor, 0
    for index, band_count in enumerate(counts):
        count += band_count
        if count >= BAND_MIN_RENTERS:
            high = edges[index] if index < len(edges) else None
            merged.append(Band(low, high, count))
            low, count = high, 0
    if count:
        last = merged.pop()
        merged.append(Band(last.low, None, last.renters + count))
    return merged
