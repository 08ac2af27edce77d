"""A subscription's rules that other domains apply: the capital its results are measured from."""

from __future__ import annotations

from decimal import Decimal

from app.core.settings import Settings
from app.models import Subscription


def reference_capital(sub: Subscription, settings: Settings) -> Decimal:
    """What a subscription's equity is measured from: its paper wallet at the start (the
    same figure for testnet and live, whose real balances are the renter's business)."""
    return sub.quote_amount * settings.paper_wallet_multiple
