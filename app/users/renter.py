"""Who a renter request acts for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Renter:
    """The renter's principal and the id of its user row (made on first use, never deleted:
    the erasure blanks personal fields and keeps the row, so a principal's id never changes).
    """

    id: str
    principal: str
