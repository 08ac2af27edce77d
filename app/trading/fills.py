"""Fills and what they do to a position: exact decimals, fees in the asset Binance takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from enum import StrEnum
from typing import Any, Protocol

from app.integrations.binance.filters import BINANCE_FEE_RATE, SymbolRules

FEE_PLACES = Decimal("0.00000001")  # Binance reports commissions with 8 decimals
COST_PLACES = Decimal("0.000000000000000001")  # the Money column's scale


class Holding(Protocol):
    """What a fill changes: a subscription's Position row, or a backtest's wallet."""

    quantity: Decimal
    average_cost: Decimal
    realized_pnl: Decimal
    quote_balance: Decimal
    peak_price: Decimal | None


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True)
class Fill:
    quantity: Decimal  # base asset executed
    quote_quantity: Decimal  # quote asset exchanged
    fee: Decimal
    fee_asset: str
    exchange_order_id: str | None

    @property
    def price(self) -> Decimal:
        return (self.quote_quantity / self.quantity).quantize(COST_PLACES)

    @classmethod
    def from_binance(cls, order: dict[str, Any], fills: Sequence[dict[str, Any]]) -> Fill:
        assets = {f["commissionAsset"] for f in fills}
        return cls(
            quantity=Decimal(order["executedQty"]),
            quote_quantity=Decimal(order["cummulativeQuoteQty"]),
            fee=sum((Decimal(f["commission"]) for f in fills), Decimal(0)),
            fee_asset=assets.pop() if len(assets) == 1 else ",".join(sorted(assets)),
            exchange_order_id=str(order["orderId"]),
        )


def slipped_price(
    side: Side, market_price: Decimal, slippage: Decimal, rules: SymbolRules
) -> Decimal:
    """The market price moved `slippage` against us, to the next tick."""
    if side is Side.BUY:
        return (market_price * (1 + slippage)).quantize(rules.tick_size, rounding=ROUND_UP)
    return (market_price * (1 - slippage)).quantize(rules.tick_size, rounding=ROUND_DOWN)


def buy_quantity(
    budget: Decimal, market_price: Decimal, slippage: Decimal, rules: SymbolRules
) -> Decimal:
    """What a market buy may ask for so that, filled at the slipped price and paying the fee
    even in the quote asset, it never spends more than `budget`."""
    worst = slipped_price(Side.BUY, market_price, slippage, rules) * (1 + BINANCE_FEE_RATE)
    return rules.size_market_buy(budget, worst)


def paper_fill(
    side: Side, quantity: Decimal, market_price: Decimal, slippage: Decimal, rules: SymbolRules
) -> Fill:
    """A simulated market fill at the slipped price; the 0.1% fee is taken from the received
    asset, rounded up to 8 decimals as Binance does."""
    price = slipped_price(side, market_price, slippage, rules)
    if side is Side.BUY:
        fee = (quantity * BINANCE_FEE_RATE).quantize(FEE_PLACES, rounding=ROUND_UP)
        fee_asset = rules.base_asset
    else:
        fee = (quantity * price * BINANCE_FEE_RATE).quantize(FEE_PLACES, rounding=ROUND_UP)
        fee_asset = rules.quote_asset
    return Fill(quantity, quantity * price, fee, fee_asset, exchange_order_id=None)


def apply_fill(position: Holding, side: Side, fill: Fill, rules: SymbolRules) -> Decimal | None:
    """Update quantity, average cost (fees included) and PnL; return a sell's realized PnL.

    The paper wallet (`quote_balance`) moves too; for testnet and live it is unused.
    """
    base_fee = fill.fee if fill.fee_asset == rules.base_asset else Decimal(0)
    quote_fee = fill.fee if fill.fee_asset == rules.quote_asset else Decimal(0)
    if side is Side.BUY:
        received = fill.quantity - base_fee
        cost = fill.quote_quantity + quote_fee
        held = position.quantity + received
        position.average_cost = (
            (position.average_cost * position.quantity + cost) / held
        ).quantize(COST_PLACES)
        position.quantity = held
        position.quote_balance -= cost
        return None
    proceeds = fill.quote_quantity - quote_fee
    sold = fill.quantity + base_fee
    realized = (proceeds - position.average_cost * sold).quantize(COST_PLACES)
    position.quantity -= sold
    position.realized_pnl += realized
    position.quote_balance += proceeds
    if position.quantity == 0:
        position.average_cost = Decimal(0)
    if rules.is_dust(position.quantity, fill.price):
        # The holding is over; what a lot-sized sale leaves behind must not carry this
        # cycle's peak into the next entry's trailing stop.
        position.peak_price = None
    return realized
