"""Paper fills and position accounting, exact to the last decimal."""

from __future__ import annotations

from decimal import Decimal

from app.integrations.binance.filters import SymbolRules
from app.models import Position
from app.trading.fills import Fill, Side, apply_fill, paper_fill

D = Decimal
BTCUSDT = SymbolRules(
    symbol="BTCUSDT",
    base_asset="BTC",
    quote_asset="USDT",
    tick_size=D("0.01"),
    min_price=D("0.01"),
    max_price=D("1000000"),
    step_size=D("0.00001"),
    min_qty=D("0.00001"),
    max_qty=D("9000"),
    min_notional=D("5"),
    min_notional_applies_to_market=True,
)


def empty_position(wallet: str = "1000") -> Position:
    return Position(
        subscription_id="s",
        symbol="BTCUSDT",
        quantity=D(0),
        average_cost=D(0),
        realized_pnl=D(0),
        quote_balance=D(wallet),
    )


def test_paper_buy_then_sell_is_exact() -> None:
    position = empty_position()
    buy = paper_fill(Side.BUY, D("0.00166"), D("60000.00"), D("0.0005"), BTCUSDT)
    # 60000 * 1.0005 = 60030.00; fee 0.1% of 0.00166 BTC = 0.00000166 BTC
    assert buy == Fill(D("0.00166"), D("99.649800"), D("0.00000166"), "BTC", None)
    assert apply_fill(position, Side.BUY, buy, BTCUSDT) is None
    assert position.quantity == D("0.00165834")
    assert position.quote_balance == D("900.350200")
    # cost 99.6498 over 0.00165834 BTC received, fees included
    assert position.average_cost == (D("99.649800") / D("0.00165834")).quantize(D("1e-18"))

    sell = paper_fill(Side.SELL, D("0.00165"), D("61000.00"), D("0.0005"), BTCUSDT)
    # 61000 * 0.9995 = 60969.50; proceeds 100.599675; fee 0.1% rounded up to 8 decimals
    assert sell.quote_quantity == D("100.59967500")
    assert sell.fee == D("0.10059968") and sell.fee_asset == "USDT"
    realized = apply_fill(position, Side.SELL, sell, BTCUSDT)
    expected = (D("100.599675") - D("0.10059968") - position_cost(D("0.00165"))).quantize(
        D("1e-18")
    )
    assert realized == expected
    assert position.quantity == D("0.00000834")
    assert position.quote_balance == D("900.350200") + D("100.599675") - D("0.10059968")


def position_cost(quantity: Decimal) -> Decimal:
    return (D("99.649800") / D("0.00165834")).quantize(D("1e-18")) * quantity


def test_selling_everything_resets_the_average_cost() -> None:
    position = empty_position()
    apply_fill(position, Side.BUY, Fill(D("1"), D("100"), D("0.001"), "BTC", "1"), BTCUSDT)
    realized = apply_fill(
        position, Side.SELL, Fill(D("0.999"), D("110"), D("0.11"), "USDT", "2"), BTCUSDT
    )
    assert position.quantity == 0 and position.average_cost == 0
    assert realized == D("109.89") - D("100")
    assert position.realized_pnl == realized


def test_a_sale_that_leaves_dust_forgets_the_peak() -> None:
    # The buy's fee comes out of the base asset, so the lot-sized sale leaves dust behind; the
    # next entry's trailing stop must start from its own peak, not this cycle's.
    position = empty_position()
    buy = paper_fill(Side.BUY, D("0.01780"), D("56000.00"), D("0.0005"), BTCUSDT)
    apply_fill(position, Side.BUY, buy, BTCUSDT)
    position.peak_price = D("56313.20")
    sell = paper_fill(
        Side.SELL, BTCUSDT.floor_quantity(position.quantity), D("55468.50"), D(0), BTCUSDT
    )
    apply_fill(position, Side.SELL, sell, BTCUSDT)
    assert 0 < position.quantity < BTCUSDT.min_qty
    assert position.peak_price is None
