"""Accounts, orders, filters and matching of the sandbox: pure logic, no HTTP.

Errors carry Binance's codes, messages and HTTP statuses. Parameters arrive already read
(app/sandbox/params.py): a number's text is plain digits. Fees are 0.1% taken in the asset
received (BUY: base, SELL: quote), rounded up to 8 decimals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_UP, Decimal
from typing import Any

from app.sandbox.market import SYMBOLS, Market, SymbolSpec

FEE_RATE = Decimal("0.001")
FEE_PLACES = Decimal("0.00000001")
MAX_QTY = Decimal("9000")
MAX_PRICE = Decimal("1000000")
# What each order type must not carry: Binance answers -1106 rather than ignore it.
NOT_REQUIRED = {"MARKET": ("timeInForce", "price"), "LIMIT": ("quoteOrderQty",)}


class SandboxError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def unknown_symbol() -> SandboxError:
    return SandboxError(-1121, "Invalid symbol.")


def spec_of(symbol: str | None) -> SymbolSpec:
    if symbol is None:
        raise SandboxError(
            -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        )
    spec = SYMBOLS.get(symbol)
    if spec is None:
        raise unknown_symbol()
    return spec


def required_decimal(params: dict[str, str], name: str) -> Decimal:
    value = optional_decimal(params, name)
    if value is None:
        raise SandboxError(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def optional_decimal(params: dict[str, str], name: str) -> Decimal | None:
    """Zero counts as not sent, as on Binance."""
    value = Decimal(params.get(name) or 0)
    return value if value > 0 else None


def not_required(name: str) -> SandboxError:
    return SandboxError(-1106, f"Parameter '{name}' sent when not required.")


def _is_multiple(value: Decimal, origin: Decimal, step: Decimal) -> bool:
    return (value - origin) % step == 0


def check_lot(spec: SymbolSpec, quantity: Decimal) -> None:
    if (
        quantity < spec.min_qty
        or quantity > MAX_QTY
        or not _is_multiple(quantity, spec.min_qty, spec.step_size)
    ):
        raise SandboxError(-1013, "Filter failure: LOT_SIZE")


def check_price(spec: SymbolSpec, price: Decimal) -> None:
    if (
        price < spec.tick_size
        or price > MAX_PRICE
        or not _is_multiple(price, spec.tick_size, spec.tick_size)
    ):
        raise SandboxError(-1013, "Filter failure: PRICE_FILTER")


def check_notional(spec: SymbolSpec, quantity: Decimal, price: Decimal) -> None:
    if quantity * price < spec.min_notional:
        raise SandboxError(-1013, "Filter failure: NOTIONAL")


def _order_kind(params: dict[str, str]) -> tuple[SymbolSpec, str, str]:
    """(symbol, side, type) of a new order, refused as Binance refuses them."""
    spec = spec_of(params.get("symbol"))
    side = params.get("side")
    order_type = params.get("type")
    if side not in ("BUY", "SELL"):
        raise SandboxError(
            -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."
        )
    if order_type not in ("MARKET", "LIMIT"):
        raise SandboxError(-1116, "Invalid orderType.")
    for name in NOT_REQUIRED[order_type]:
        if name in params:
            raise not_required(name)
    return spec, side, order_type


@dataclass
class Account:
    api_key: str
    api_secret: str
    free: dict[str, Decimal]
    locked: dict[str, Decimal] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)

    def balance(self, asset: str) -> Decimal:
        return self.free.get(asset, Decimal(0))

    def move(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.balance(asset) + amount


def _new_order(
    order_id: int,
    spec: SymbolSpec,
    client_id: str,
    order_type: str,
    side: str,
    quantity: Decimal,
    price: Decimal,
    now_ms: int,
) -> dict[str, Any]:
    """An accepted order as Binance shows it, resting (NEW) until filled."""
    return {
        "symbol": spec.symbol,
        "orderId": order_id,
        "orderListId": -1,
        "clientOrderId": client_id,
        "transactTime": now_ms,
        "price": _plain(price if order_type == "LIMIT" else Decimal(0)),
        "origQty": _plain(quantity),
        "executedQty": _plain(Decimal(0)),
        "cummulativeQuoteQty": _plain(Decimal(0)),
        "status": "NEW",
        "timeInForce": "GTC",
        "type": order_type,
        "side": side,
        "workingTime": now_ms,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "time": now_ms,
        "updateTime": now_ms,
        "fills": [],
    }


def _fee(amount: Decimal) -> Decimal:
    return (amount * FEE_RATE).quantize(FEE_PLACES, rounding=ROUND_UP)


def _plain(value: Decimal) -> str:
    return format(value.quantize(FEE_PLACES), "f")


class Exchange:
    def __init__(self, market: Market) -> None:
        self.market = market
        self.accounts: dict[str, Account] = {}
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)

    def add_account(self, api_key: str, api_secret: str, balances: dict[str, Decimal]) -> Account:
        account = Account(api_key, api_secret, dict(balances))
        self.accounts[api_key] = account
        return account

    # -- orders ----------------------------------------------------------------------------

    def place(
        self, account: Account, params: dict[str, str], now_ms: int, *, test: bool = False
    ) -> dict[str, Any]:
        spec, side, order_type = _order_kind(params)
        self.fill_crossed_limits(account, now_ms)
        client_id = params.get("newClientOrderId") or f"sandbox-{next(self._order_ids)}"
        if any(o["clientOrderId"] == client_id and o["status"] == "NEW" for o in account.orders):
            raise SandboxError(-2010, "Duplicate order sent.")
        market_price = self.market.price(spec.symbol, now_ms)
        quantity, price = self._quantity_and_price(spec, order_type, params, market_price)
        check_lot(spec, quantity)
        check_notional(spec, quantity, price)
        self._check_balance(account, spec, side, quantity, price)
        if test:
            return {}
        order = _new_order(
            next(self._order_ids), spec, client_id, order_type, side, quantity, price, now_ms
        )
        account.orders.append(order)
        crosses = (side == "BUY" and price >= market_price) or (
            side == "SELL" and price <= market_price
        )
        if order_type == "MARKET" or crosses:
            self._fill(account, spec, order, market_price, now_ms)
        else:
            self._lock(account, spec, side, quantity, price)
        return order

    def _quantity_and_price(
        self, spec: SymbolSpec, order_type: str, params: dict[str, str], market_price: Decimal
    ) -> tuple[Decimal, Decimal]:
        """What the order asks for, at the price it is checked against: a MARKET order's is
        the market's, a LIMIT order's its limit."""
        if order_type == "MARKET":
            return self._market_quantity(spec, params, market_price), market_price
        if params.get("timeInForce") != "GTC":
            raise SandboxError(
                -1102,
                "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
            )
        quantity = required_decimal(params, "quantity")
        price = required_decimal(params, "price")
        check_price(spec, price)
        return quantity, price

    def _market_quantity(self, spec: SymbolSpec, params: dict[str, str], price: Decimal) -> Decimal:
        quantity = optional_decimal(params, "quantity")
        quote = optional_decimal(params, "quoteOrderQty")
        if quantity is not None:
            if quote is not None:
                raise not_required("quoteOrderQty")
            return quantity
        if quote is None:
            raise SandboxError(
                -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
            )
        steps = ((quote / price) / spec.step_size).to_integral_value(rounding=ROUND_FLOOR)
        return steps * spec.step_size

    def _check_balance(
        self, account: Account, spec: SymbolSpec, side: str, quantity: Decimal, price: Decimal
    ) -> None:
        needed, asset = (quantity * price, spec.quote) if side == "BUY" else (quantity, spec.base)
        if account.balance(asset) < needed:
            raise SandboxError(-2010, "Account has insufficient balance for requested action.")

    def _lock(
        self, account: Account, spec: SymbolSpec, side: str, quantity: Decimal, price: Decimal
    ) -> None:
        amount, asset = (quantity * price, spec.quote) if side == "BUY" else (quantity, spec.base)
        account.move(asset, -amount)
        account.locked[asset] = account.locked.get(asset, Decimal(0)) + amount

    def _unlock(self, account: Account, spec: SymbolSpec, order: dict[str, Any]) -> None:
        quantity, price = Decimal(order["origQty"]), Decimal(order["price"])
        amount, asset = (
            (quantity * price, spec.quote) if order["side"] == "BUY" else (quantity, spec.base)
        )
        account.locked[asset] -= amount
        account.move(asset, amount)

    def _fill(
        self,
        account: Account,
        spec: SymbolSpec,
        order: dict[str, Any],
        price: Decimal,
        now_ms: int,
    ) -> None:
        quantity = Decimal(order["origQty"])
        quote = quantity * price
        if order["side"] == "BUY":
            fee, fee_asset = _fee(quantity), spec.base
            account.move(spec.quote, -quote)
            account.move(spec.base, quantity - fee)
        else:
            fee, fee_asset = _fee(quote), spec.quote
            account.move(spec.base, -quantity)
            account.move(spec.quote, quote - fee)
        trade_id = next(self._trade_ids)
        order.update(
            status="FILLED",
            executedQty=_plain(quantity),
            cummulativeQuoteQty=_plain(quote),
            updateTime=now_ms,
            fills=[
                {
                    "price": _plain(price),
                    "qty": _plain(quantity),
                    "commission": _plain(fee),
                    "commissionAsset": fee_asset,
                    "tradeId": trade_id,
                }
            ],
        )
        account.trades.append(
            {
                "symbol": spec.symbol,
                "id": trade_id,
                "orderId": order["orderId"],
                "orderListId": -1,
                "price": _plain(price),
                "qty": _plain(quantity),
                "quoteQty": _plain(quote),
                "commission": _plain(fee),
                "commissionAsset": fee_asset,
                "time": now_ms,
                "isBuyer": order["side"] == "BUY",
                "isMaker": order["type"] == "LIMIT",
                "isBestMatch": True,
            }
        )

    def fill_crossed_limits(self, account: Account, now_ms: int) -> None:
        """Resting LIMIT orders fill, at their limit, once the price has crossed them."""
        for order in account.orders:
            if order["status"] != "NEW":
                continue
            spec = SYMBOLS[order["symbol"]]
            price, limit = self.market.price(spec.symbol, now_ms), Decimal(order["price"])
            if (order["side"] == "BUY" and price <= limit) or (
                order["side"] == "SELL" and price >= limit
            ):
                self._unlock(account, spec, order)
                self._fill(account, spec, order, limit, now_ms)

    def find(self, account: Account, params: dict[str, str]) -> dict[str, Any]:
        spec = spec_of(params.get("symbol"))
        order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise SandboxError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        for order in reversed(account.orders):  # the latest order of a reused client id
            if order["symbol"] == spec.symbol and (
                str(order["orderId"]) == order_id or order["clientOrderId"] == client_id
            ):
                return order
        raise SandboxError(-2013, "Order does not exist.")

    def cancel(self, account: Account, params: dict[str, str], now_ms: int) -> dict[str, Any]:
        self.fill_crossed_limits(account, now_ms)
        try:
            order = self.find(account, params)
        except SandboxError as exc:
            raise SandboxError(-2011, "Unknown order sent.") from exc
        if order["status"] != "NEW":
            raise SandboxError(-2011, "Unknown order sent.")
        self._unlock(account, SYMBOLS[order["symbol"]], order)
        order.update(status="CANCELED", updateTime=now_ms)
        return order
