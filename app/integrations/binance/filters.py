"""A symbol's trading rules from exchangeInfo, and order sizing that cannot violate them.

Quantities are floored to stepSize and prices to tickSize (never rounded up: that would
spend more than asked); an order under minQty or the minimum notional is refused here,
before it costs a request and an exchange rejection (-1013).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from app.integrations.binance.errors import InvalidOrder

BINANCE_FEE_RATE = Decimal("0.001")


class OrderTooSmall(InvalidOrder):
    """The order would break LOT_SIZE or the minimum notional once sized."""


def floor_to(value: Decimal, step: Decimal, origin: Decimal = Decimal(0)) -> Decimal:
    if step == 0:
        return value
    # Floor, not truncate: under the origin (minQty) a value must not round up to it.
    steps = ((value - origin) / step).to_integral_value(rounding=ROUND_FLOOR)
    return (origin + steps * step).normalize()


@dataclass(frozen=True)
class SymbolRules:
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    min_notional_applies_to_market: bool

    @classmethod
    def from_exchange_info(cls, info: dict[str, Any]) -> SymbolRules:
        """Sizes are normalized: Binance sends "0.01000000", whose exponent would make
        quantize() round to 1e-8 instead of to the tick."""
        filters = {f["filterType"]: f for f in info["filters"]}
        price, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
        # NOTIONAL replaced MIN_NOTIONAL; either may be present.
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
        applies = notional.get("applyMinToMarket", notional.get("applyToMarket", True))
        return cls(
            symbol=info["symbol"],
            base_asset=info["baseAsset"],
            quote_asset=info["quoteAsset"],
            tick_size=Decimal(price["tickSize"]).normalize(),
            min_price=Decimal(price["minPrice"]).normalize(),
            max_price=Decimal(price["maxPrice"]).normalize(),
            step_size=Decimal(lot["stepSize"]).normalize(),
            min_qty=Decimal(lot["minQty"]).normalize(),
            max_qty=Decimal(lot["maxQty"]).normalize(),
            min_notional=Decimal(notional.get("minNotional", "0")).normalize(),
            min_notional_applies_to_market=bool(applies),
        )

    def to_json(self) -> dict[str, str | bool]:
        """The rules as stored data (Decimals as their exact strings)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: v if isinstance(v, str | bool) else str(v) for name, v in values.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SymbolRules:
        values: dict[str, Any] = {
            f.name: Decimal(data[f.name]) if f.type == "Decimal" else data[f.name]
            for f in fields(cls)
        }
        return cls(**values)

    def floor_quantity(self, quantity: Decimal) -> Decimal:
        return floor_to(min(quantity, self.max_qty), self.step_size, self.min_qty)

    def floor_price(self, price: Decimal) -> Decimal:
        return floor_to(price, self.tick_size, self.min_price)

    def _checked(self, quantity: Decimal, price: Decimal, what: str) -> Decimal:
        if quantity < self.min_qty or quantity <= 0:
            raise OrderTooSmall(
                f"{what} of {quantity} {self.base_asset} is under the minimum quantity "
                f"{self.min_qty.normalize()}"
            )
        if self.min_notional_applies_to_market and quantity * price < self.min_notional:
            raise OrderTooSmall(
                f"{what} worth {(quantity * price).normalize()} {self.quote_asset} is under the "
                f"minimum notional {self.min_notional.normalize()}"
            )
        return quantity

    def is_dust(self, quantity: Decimal, price: Decimal) -> bool:
        """Too little to sell at all: what buy fees and lot steps leave behind."""
        return self.floor_quantity(quantity) < self.min_qty or (
            self.min_notional_applies_to_market
            and self.floor_quantity(quantity) * price < self.min_notional
        )

    def size_market_buy(self, quote_amount: Decimal, price: Decimal) -> Decimal:
        """The base quantity `quote_amount` buys at `price`, floored to the lot step."""
        return self._checked(self.floor_quantity(quote_amount / price), price, "buy")

    def size_market_sell(self, held: Decimal, price: Decimal) -> Decimal:
        """All of a holding that can be sold. `held` is what the account really has: after a
        buy, Binance took its fee in the base asset, so that is less than the order's qty."""
        return self._checked(self.floor_quantity(held), price, "sell")
