"""Shared field types for API bodies."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer


def _plain(value: Decimal) -> str:
    # One spelling for one amount on every backend: no exponent, no trailing zeros.
    text = format(value.normalize(), "f")
    return text


Amount = Annotated[Decimal, PlainSerializer(_plain, return_type=str, when_used="json")]
"""A decimal written in one spelling: equal values ("0.50", "0.5", "5E-1") hash alike and echo
alike. Every body field of this type also bounds its range and places, so a value such as
1e400 is a 422 rather than a number stored and echoed in exponent notation."""

# Places a body may give: quote-currency money (Binance quotes to 8), percentages and weights.
QUOTE_PLACES = 8
PERCENT_PLACES = 4
# Far above any position or loss limit a renter means, far inside NUMERIC(36, 18).
MAX_QUOTE = Decimal(10) ** 12
