"""Who a renter request acts for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RenterRef(Protocol):
    """What names a renter in a query: its marketplace and principal (a Renter, or a renter's
    read, which has not looked up the renter's row)."""

    @property
    def marketplace_id(self) -> str: ...

    @property
    def principal(self) -> str: ...


@dataclass(frozen=True)
class Renter:
    """The renter, a principal in one marketplace, and the id of its user row (made on first
    use, never deleted: the erasure blanks personal fields and keeps the row, so a renter's id
    never changes)."""

    id: str
    marketplace_id: str
    principal: str
