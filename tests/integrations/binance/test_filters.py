"""Sizing against exchange filters: 1,000 random orders, none of which breaks a filter."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.integrations.binance.filters import OrderTooSmall, SymbolRules
from app.sandbox.exchange import check_lot, check_notional
from app.sandbox.market import SYMBOLS
from app.sandbox.server import symbol_info

D = Decimal


def rules_for(tick: str, step: str, min_qty: str, min_notional: str) -> SymbolRules:
    info = {
        "symbol": "TESTUSDT",
        "baseAsset": "TEST",
        "quoteAsset": "USDT",
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000",
                "tickSize": tick,
            },
            {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": "9000", "stepSize": step},
            {
                "filterType": "NOTIONAL",
                "minNotional": min_notional,
                "applyMinToMarket": True,
                "maxNotional": "9000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
    }
    return SymbolRules.from_exchange_info(info)


def violations(rules: SymbolRules, quantity: Decimal, price: Decimal) -> list[str]:
    """Binance's checks, written from its documentation rather than from our sizing code."""
    found = []
    if quantity < rules.min_qty or quantity > rules.max_qty:
        found.append("LOT_SIZE range")
    if (quantity - rules.min_qty) % rules.step_size != 0:
        found.append("LOT_SIZE step")
    if quantity * price < rules.min_notional:
        found.append("NOTIONAL")
    return found


steps = st.sampled_from(["0.00001", "0.0001", "0.001", "0.01", "0.1", "1"])
rules_strategy = st.builds(
    lambda step, min_steps, notional: rules_for("0.01", step, str(D(step) * min_steps), notional),
    steps,
    st.integers(min_value=1, max_value=10),
    st.sampled_from(["0", "1", "5", "10"]),
)
prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
amounts = st.decimals(min_value=D("0.01"), max_value=D("50000"), places=8)


@settings(max_examples=1000, deadline=None)
@given(rules_strategy, prices, amounts, st.booleans())
def test_no_sized_order_violates_a_filter(
    rules: SymbolRules, price: Decimal, amount: Decimal, buy: bool
) -> None:
    try:
        quantity = (
            rules.size_market_buy(amount, price) if buy else rules.size_market_sell(amount, price)
        )
    except OrderTooSmall:
        return
    assert violations(rules, quantity, price) == []
    if buy:
        assert quantity * price <= amount  # flooring never spends more than asked
    else:
        assert quantity <= amount


def test_binance_btcusdt_examples() -> None:
    rules = rules_for("0.01", "0.00001", "0.00001", "5")
    assert rules.size_market_buy(D("100"), D("60123.45")) == D("0.00166")
    assert rules.floor_price(D("60123.456")) == D("60123.45")
    # Bought 0.00166, Binance took 0.1% in BTC: 0.00165834 is what can be sold.
    assert rules.size_market_sell(D("0.00165834"), D("60000")) == D("0.00165")
    with pytest.raises(OrderTooSmall, match="minimum notional"):
        rules.size_market_buy(D("4"), D("60000"))
    with pytest.raises(OrderTooSmall, match="minimum quantity"):
        rules.size_market_sell(D("0.000009"), D("60000"))


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(sorted(SYMBOLS)), prices, amounts, st.booleans())
def test_sized_orders_pass_the_sandbox_exchange_checks(
    symbol: str, price: Decimal, amount: Decimal, buy: bool
) -> None:
    """The same property judged by the sandbox's independent filter code."""
    spec = SYMBOLS[symbol]
    rules = SymbolRules.from_exchange_info(symbol_info(symbol))
    try:
        quantity = (
            rules.size_market_buy(amount, price) if buy else rules.size_market_sell(amount, price)
        )
    except OrderTooSmall:
        return
    check_lot(spec, quantity)
    check_notional(spec, quantity, price)
