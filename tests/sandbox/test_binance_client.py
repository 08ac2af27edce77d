"""The unmodified python-binance AsyncClient against the sandbox: every endpoint, every error."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from tests.sandbox_server import SandboxServer

D = Decimal


@pytest.fixture
async def trader(sandbox: SandboxServer) -> AsyncIterator[tuple[AsyncClient, str]]:
    api_key, api_secret = sandbox.new_account(USDT="10000", BTC="0.5")
    client = await sandbox.client(api_key, api_secret)
    yield client, api_key
    await client.close_connection()


def balances(account: dict) -> dict[str, Decimal]:
    return {b["asset"]: D(b["free"]) for b in account["balances"]}


async def expect_error(call, status: int, code: int) -> BinanceAPIException:
    with pytest.raises(BinanceAPIException) as caught:
        await call
    assert (caught.value.status_code, caught.value.code) == (status, code), caught.value.message
    return caught.value


async def test_public_endpoints(sandbox: SandboxServer) -> None:
    client = await sandbox.client()
    try:
        assert await client.ping() == {}
        server_ms = (await client.get_server_time())["serverTime"]
        assert abs(server_ms - time.time() * 1000) < 5000
        info = await client.get_exchange_info()
        btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
        filters = {f["filterType"]: f for f in btc["filters"]}
        assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
        assert btc["quoteOrderQtyMarketAllowed"] is True
        assert {s["symbol"] for s in info["symbols"]} == {
            "BTCUSDT",
            "ETHUSDT",
            "BNBUSDT",
            "SOLUSDT",
        }
        price = D((await client.get_symbol_ticker(symbol="ETHUSDT"))["price"])
        assert price > 0 and price == price.quantize(D("0.01"))
        assert len(await client.get_all_tickers()) == 4
    finally:
        await client.close_connection()


async def test_klines_are_deterministic_closed_and_aligned(sandbox: SandboxServer) -> None:
    client = await sandbox.client()
    try:
        now = int(time.time() * 1000)
        hour = 3_600_000
        end = now // hour * hour - 1  # the last closed hourly candle ends here
        window = dict(symbol="BTCUSDT", interval="1h", startTime=end - 24 * hour + 1, endTime=end)
        first, second = await client.get_klines(**window), await client.get_klines(**window)
        assert first == second and len(first) == 24
        for row in first:
            assert len(row) == 12 and row[0] % hour == 0 and row[6] == row[0] + hour - 1
            assert row[6] < now
            o, h, low, c = (D(x) for x in row[1:5])
            assert low <= min(o, c) <= max(o, c) <= h
        assert [r[0] for r in first] == sorted(r[0] for r in first)
        latest = await client.get_klines(symbol="BTCUSDT", interval="1m", limit=3)
        assert len(latest) == 3 and latest[-1][6] >= now  # the forming candle comes last
        with pytest.raises(BinanceAPIException) as caught:
            await client.get_klines(symbol="NOPEUSDT", interval="1m")
        assert caught.value.code == -1121
    finally:
        await client.close_connection()


async def test_market_orders_fill_with_the_fee_in_the_received_asset(trader) -> None:
    client, _ = trader
    before = balances(await client.get_account())
    buy = await client.create_order(
        symbol="BTCUSDT",
        side="BUY",
        type="MARKET",
        quantity="0.001",
        newClientOrderId="buy-1",
        newOrderRespType="FULL",
    )
    fill = buy["fills"][0]
    price = D(fill["price"])
    assert buy["status"] == "FILLED" and buy["clientOrderId"] == "buy-1"
    assert D(fill["commission"]) == D("0.000001") and fill["commissionAsset"] == "BTC"
    after = balances(await client.get_account())
    assert after["USDT"] == before["USDT"] - D("0.001") * price
    assert after["BTC"] == before["BTC"] + D("0.001") - D("0.000001")

    by_quote = await client.create_order(
        symbol="ETHUSDT", side="BUY", type="MARKET", quoteOrderQty="100"
    )
    eth_price = D(by_quote["fills"][0]["price"])
    assert D(by_quote["executedQty"]) == (D(100) / eth_price).quantize(D("0.0001"), "ROUND_FLOOR")

    sell = await client.create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.0005"
    )
    sell_fill = sell["fills"][0]
    quote = D("0.0005") * D(sell_fill["price"])
    assert sell_fill["commissionAsset"] == "USDT"
    assert D(sell_fill["commission"]) == (quote * D("0.001")).quantize(D("1e-8"), "ROUND_UP")
    ack = await client.create_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.0001", newOrderRespType="ACK"
    )
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    result = await client.create_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.0001", newOrderRespType="RESULT"
    )
    assert result["status"] == "FILLED" and result["executedQty"] == "0.00010000"
    assert "fills" not in result
    trades = await client.get_my_trades(symbol="BTCUSDT")
    assert [t["orderId"] for t in trades] == [
        buy["orderId"],
        sell["orderId"],
        ack["orderId"],
        result["orderId"],
    ]


async def test_limit_orders_rest_query_and_cancel(trader) -> None:
    client, _ = trader
    price = D((await client.get_symbol_ticker(symbol="BTCUSDT"))["price"])
    low = (price * D("0.5")).quantize(D("0.01"))
    order = await client.create_order(
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.001",
        price=str(low),
        newClientOrderId="rest-1",
    )
    assert order["status"] == "NEW"
    assert balances(await client.get_account())["USDT"] == D(10000) - D("0.001") * low
    await expect_error(
        client.create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price=str(low),
            newClientOrderId="rest-1",
        ),
        400,
        -2010,
    )
    assert [o["clientOrderId"] for o in await client.get_open_orders(symbol="BTCUSDT")] == [
        "rest-1"
    ]
    by_client = await client.get_order(symbol="BTCUSDT", origClientOrderId="rest-1")
    by_id = await client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert by_client == by_id and by_id["status"] == "NEW"
    cancelled = await client.cancel_order(symbol="BTCUSDT", origClientOrderId="rest-1")
    assert cancelled["status"] == "CANCELED"
    assert balances(await client.get_account())["USDT"] == D(10000)
    await expect_error(client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"]), 400, -2011)
    await expect_error(client.get_order(symbol="BTCUSDT", orderId=999999), 400, -2013)
    assert len(await client.get_all_orders(symbol="BTCUSDT")) == 1
    assert (
        await client.create_test_order(
            symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001"
        )
        == {}
    )
    assert await client.get_open_orders() == []


async def test_every_error_code(sandbox: SandboxServer, trader) -> None:
    client, api_key = trader
    order = dict(symbol="BTCUSDT", side="BUY", type="MARKET")
    await expect_error(client.create_order(**order, quantity="0.000015"), 400, -1013)  # LOT_SIZE
    await expect_error(client.create_order(**order, quantity="0.000001"), 400, -1013)  # minQty
    await expect_error(client.create_order(**order, quantity="0.00005"), 400, -1013)  # NOTIONAL
    price_error = await expect_error(
        client.create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price="100.001",
        ),
        400,
        -1013,
    )
    assert price_error.message == "Filter failure: PRICE_FILTER"
    await expect_error(client.create_order(**order, quantity="5"), 400, -2010)  # balance
    await expect_error(
        client.create_order(symbol="NOPEUSDT", side="BUY", type="MARKET", quantity="1"), 400, -1121
    )

    wrong_secret = await sandbox.client(api_key, "0" * 64)
    unknown_key = await sandbox.client("sbx-unknown", "0" * 64)
    skewed = await sandbox.client(*sandbox.new_account())
    skewed.timestamp_offset = -120_000  # our clock two minutes behind the exchange
    try:
        await expect_error(wrong_secret.get_account(), 400, -1022)
        await expect_error(unknown_key.get_account(), 401, -2015)
        await expect_error(skewed.get_account(), 400, -1021)
    finally:
        for other in (wrong_secret, unknown_key, skewed):
            await other.close_connection()
    assert sandbox.orders(api_key) == []  # nothing refused was placed


async def test_weight_header_429_then_418(sandbox: SandboxServer) -> None:
    client = await sandbox.client()
    try:
        await client.ping()
        assert int(client.response.headers["X-MBX-USED-WEIGHT-1M"]) >= 1
        sandbox.limit_weight(1, violations_before_ban=2, ban_seconds=60)
        await client.ping()
        limited = await expect_error(client.ping(), 429, -1003)
        assert 1 <= int(limited.response.headers["Retry-After"]) <= 61
        banned = await expect_error(client.ping(), 418, -1003)
        assert int(banned.response.headers["Retry-After"]) == 60
    finally:
        sandbox.reset_weight_limits()
        await client.close_connection()


async def test_fault_injection(sandbox: SandboxServer, trader) -> None:
    client, api_key = trader
    sandbox.admin("POST", "/sandbox/faults", json={"error_5xx_next": 1})
    await expect_error(client.get_symbol_ticker(symbol="BTCUSDT"), 503, 0)
    assert await client.get_symbol_ticker(symbol="BTCUSDT")
    sandbox.admin("POST", "/sandbox/faults", json={"executed_then_5xx_next": 1})
    await expect_error(
        client.create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="MARKET",
            quantity="0.001",
            newClientOrderId="lost-answer",
        ),
        503,
        0,
    )
    placed = sandbox.orders(api_key)
    assert [o["clientOrderId"] for o in placed] == ["lost-answer"] and placed[0][
        "status"
    ] == "FILLED"
    sandbox.admin("POST", "/sandbox/faults", json={"latency_ms": 300})
    started = time.monotonic()
    await client.ping()
    assert time.monotonic() - started >= 0.3
    sandbox.admin("DELETE", "/sandbox/faults")


async def test_a_colon_in_a_client_order_id_breaks_the_signature(trader) -> None:
    # python-binance signs the raw value but sends it url-encoded; Binance (and the sandbox)
    # verify the bytes sent. This is why our client order ids are [A-Za-z0-9_-] only.
    client, _ = trader
    await expect_error(
        client.create_order(
            symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001", newClientOrderId="sub:42"
        ),
        400,
        -1022,
    )
