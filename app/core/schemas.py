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
