"""The paper-to-live gap, pure: each testnet or live fill against the median paper fill of the
same decision, summarised as the band its median and 90th percentile fall in."""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from app.track_records.bands import Scale, scale

BPS = Decimal(10_000)
PRICE_BPS = scale(None, -50, -25, -10, -5, 0, 5, 10, 25, 50)
FEE_BPS = scale(None, -10, -5, 0, 5, 10, 25)


@dataclass(frozen=True)
class Fill:
    decision_id: str
    renter: str
    live: bool  # testnet or live; False: paper
    side: str
    symbol: str
    price: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str | None

    @property
    def fee_bps(self) -> Decimal | None:
        """The fee in basis points of the fill's value; None when paid in a third asset."""
        if not self.quote_quantity or not self.fee_asset:
            return None
        if self.symbol.endswith(self.fee_asset):
            return self.fee / self.quote_quantity * BPS
        if self.symbol.startswith(self.fee_asset):
            return self.fee * self.price / self.quote_quantity * BPS
        return None


@dataclass(frozen=True)
class Gaps:
    renters: int  # distinct testnet and live renters with a fill compared
    price_bps: list[Decimal]
    fee_bps: list[Decimal]


def gaps(fills: Iterable[Fill]) -> Gaps:
    paper: dict[str, list[Fill]] = defaultdict(list)
    live: list[Fill] = []
    for fill in fills:
        if fill.live:
            live.append(fill)
        else:
            paper[fill.decision_id].append(fill)
    renters: set[str] = set()
    price: list[Decimal] = []
    fee: list[Decimal] = []
    for fill in live:
        reference = paper.get(fill.decision_id)
        if not reference:
            continue
        renters.add(fill.renter)
        paper_price = statistics.median(f.price for f in reference)
        worse = fill.price - paper_price if fill.side == "BUY" else paper_price - fill.price
        price.append(worse / paper_price * BPS)
        paper_fees = [f.fee_bps for f in reference if f.fee_bps is not None]
        if fill.fee_bps is not None and paper_fees:
            fee.append(fill.fee_bps - statistics.median(paper_fees))
    return Gaps(len(renters), price, fee)


def quantile_band(
    values: Sequence[Decimal], q: Decimal, bands: Scale
) -> tuple[Decimal | None, Decimal | None]:
    """The band the nearest-rank q-quantile falls in. The k-th smallest value's band is the k-th
    smallest band, so the answer depends on each value only through its band."""
    ordered = sorted(values)
    value = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    index = bisect.bisect_right(bands.edges, value)
    low = bands.edges[index - 1] if index else bands.floor
    high = bands.edges[index] if index < len(bands.edges) else None
    return low, high
