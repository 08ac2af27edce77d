"""Bad input gets Binance spot's own answer (code, HTTP status, message), so that nothing the
sandbox accepts is refused on the testnet.

Through python-binance wherever the SDK can send the input; raw and correctly signed where the
SDK would normalise it (it sets recvWindow and the timestamp itself, and needs a key to sign).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from tests.sandbox_server import SandboxServer

CLIENT_ID_RANGE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
INTEGER_RANGE = r"^[0-9]{1,20}$"
MARKET_BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}


def illegal(parameter: str, legal_range: str) -> str:
    return f"Illegal characters found in parameter '{parameter}'; legal range is '{legal_range}'."


@pytest.fixture
def account(sandbox: SandboxServer) -> tuple[str, str]:
    return sandbox.new_account(USDT="10000", BTC="0.5")


@pytest.fixture
async def client(sandbox: SandboxServer, account: tuple[str, str]) -> AsyncIterator[AsyncClient]:
    client = await sandbox.client(*account)
    yield client
    await client.close_connection()


async def refused(call, status: int, code: int, msg: str) -> None:
    with pytest.raises(BinanceAPIException) as caught:
        await call
    assert (caught.value.status_code, caught.value.code, caught.value.message) == (
        status,
        code,
        msg,
    )


def send_signed(
    sandbox: SandboxServer,
    account: tuple[str, str] | None,
    method: str,
    path: str,
    query: str,
    *,
    api_key: str | None = None,
    stamped: bool = True,
) -> httpx.Response:
    """`query` goes out byte for byte (values already percent-encoded, as a client sends
    them), with the current timestamp unless it has one or `stamped` is off, and signed over
    exactly those bytes, which is what Binance verifies."""
    if stamped and "timestamp=" not in query:
        query = f"{query}&timestamp={int(time.time() * 1000)}".lstrip("&")
    secret = account[1] if account else "0" * 64
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    key = api_key if api_key is not None else (account[0] if account else None)
    headers = {"X-MBX-APIKEY": key} if key is not None else {}
    return httpx.request(
        method, f"{sandbox.url}{path}?{query}&signature={signature}", headers=headers
    )


def assert_refused(response: httpx.Response, status: int, code: int, msg: str) -> None:
    assert (response.status_code, response.json()) == (status, {"code": code, "msg": msg})


# -- newClientOrderId ----------------------------------------------------------------------


async def test_a_client_order_id_of_37_characters_is_refused_and_36_are_accepted(
    client: AsyncClient, sandbox: SandboxServer, account: tuple[str, str]
) -> None:
    await refused(
        client.create_order(**MARKET_BUY, quantity="0.001", newClientOrderId="a" * 37),
        400,
        -1100,
        illegal("newClientOrderId", CLIENT_ID_RANGE),
    )
    longest = "A.b_c-" + "9" * 30  # ':' and '/' are legal too, but the SDK garbles them
    placed = await client.create_order(**MARKET_BUY, quantity="0.001", newClientOrderId=longest)
    assert placed["clientOrderId"] == longest
    assert [o["clientOrderId"] for o in sandbox.orders(account[0])] == [longest]


@pytest.mark.parametrize("encoded", ["bad%2Aid", "bad%20id", "caf%C3%A9", "bad%23id"])
def test_a_client_order_id_outside_the_legal_characters_is_refused(
    sandbox: SandboxServer, account: tuple[str, str], encoded: str
) -> None:
    response = send_signed(
        sandbox,
        account,
        "POST",
        "/api/v3/order",
        f"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&newClientOrderId={encoded}",
    )
    assert_refused(response, 400, -1100, illegal("newClientOrderId", CLIENT_ID_RANGE))
    assert sandbox.orders(account[0]) == []


def test_a_client_order_id_with_a_colon_and_a_slash_is_legal(
    sandbox: SandboxServer, account: tuple[str, str]
) -> None:
    response = send_signed(
        sandbox,
        account,
        "POST",
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&newClientOrderId=sub%3A42%2Fx",
    )
    assert response.status_code == 200, response.text
    assert response.json()["clientOrderId"] == "sub:42/x"


# -- numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("quantity", "1E-3"),
        ("quantity", "-0.001"),
        ("quantity", ".001"),
        ("quoteOrderQty", "1e2"),
        ("quoteOrderQty", "100.000000000000000000001"),
    ],
)
async def test_a_quantity_not_written_as_plain_digits_is_refused(
    client: AsyncClient, parameter: str, value: str
) -> None:
    await refused(
        client.create_order(**MARKET_BUY, **{parameter: value}),
        400,
        -1100,
        illegal(parameter, DECIMAL_RANGE),
    )


async def test_a_price_not_written_as_plain_digits_is_refused(client: AsyncClient) -> None:
    await refused(
        client.create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price="3e4",
        ),
        400,
        -1100,
        illegal("price", DECIMAL_RANGE),
    )


async def test_a_zero_quantity_counts_as_not_sent(client: AsyncClient) -> None:
    await refused(
        client.create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0",
            price="30000",
        ),
        400,
        -1102,
        "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
    )


@pytest.mark.parametrize("limit", ["abc", "-1", "1.5"])
async def test_a_malformed_klines_limit_is_a_400_not_a_500(
    sandbox: SandboxServer, limit: str
) -> None:
    client = await sandbox.client()
    try:
        await refused(
            client.get_klines(symbol="BTCUSDT", interval="1m", limit=limit),
            400,
            -1100,
            illegal("limit", INTEGER_RANGE),
        )
        # The connection survived: the same client goes on.
        assert len(await client.get_klines(symbol="BTCUSDT", interval="1m", limit=2)) == 2
    finally:
        await client.close_connection()


async def test_malformed_kline_times_are_refused(sandbox: SandboxServer) -> None:
    client = await sandbox.client()
    try:
        for parameter in ("startTime", "endTime"):
            await refused(
                client.get_klines(symbol="BTCUSDT", interval="1m", **{parameter: "yesterday"}),
                400,
                -1100,
                illegal(parameter, INTEGER_RANGE),
            )
    finally:
        await client.close_connection()


async def test_a_malformed_order_id_is_refused(client: AsyncClient) -> None:
    await refused(
        client.get_order(symbol="BTCUSDT", orderId="12a"),
        400,
        -1100,
        illegal("orderId", INTEGER_RANGE),
    )


def test_a_recv_window_with_microseconds_is_accepted(
    sandbox: SandboxServer, account: tuple[str, str]
) -> None:
    # Binance takes up to three decimals (microseconds) in recvWindow.
    response = send_signed(sandbox, account, "GET", "/api/v3/account", "recvWindow=5000.5")
    assert response.status_code == 200, response.text
    assert response.json()["accountType"] == "SPOT"


@pytest.mark.parametrize("window", ["abc", "5e3", "-5000"])
def test_a_malformed_recv_window_is_a_400_not_a_500(
    sandbox: SandboxServer, account: tuple[str, str], window: str
) -> None:
    response = send_signed(sandbox, account, "GET", "/api/v3/account", f"recvWindow={window}")
    assert_refused(response, 400, -1100, illegal("recvWindow", DECIMAL_RANGE))


def test_a_malformed_timestamp_is_refused(sandbox: SandboxServer, account: tuple[str, str]) -> None:
    response = send_signed(sandbox, account, "GET", "/api/v3/account", "timestamp=now")
    assert_refused(response, 400, -1100, illegal("timestamp", INTEGER_RANGE))


def test_a_missing_timestamp_is_refused(sandbox: SandboxServer, account: tuple[str, str]) -> None:
    response = send_signed(
        sandbox, account, "GET", "/api/v3/account", "recvWindow=5000", stamped=False
    )
    assert_refused(
        response,
        400,
        -1102,
        "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
    )


async def test_a_timestamp_ahead_of_the_server_says_so(
    sandbox: SandboxServer, account: tuple[str, str]
) -> None:
    ahead = await sandbox.client(*account)
    ahead.timestamp_offset = 120_000  # our clock two minutes ahead of the exchange
    try:
        await refused(
            ahead.get_account(),
            400,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        )
    finally:
        await ahead.close_connection()


# -- parameters sent where they do not belong -------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "parameter"),
    [
        ({"quantity": "0.001", "timeInForce": "GTC"}, "timeInForce"),
        ({"quantity": "0.001", "price": "30000"}, "price"),
        ({"quantity": "0.001", "quoteOrderQty": "100"}, "quoteOrderQty"),
    ],
)
async def test_a_market_order_with_a_limit_parameter_is_refused(
    client: AsyncClient, sandbox: SandboxServer, account: tuple[str, str], extra, parameter: str
) -> None:
    await refused(
        client.create_order(**MARKET_BUY, **extra),
        400,
        -1106,
        f"Parameter '{parameter}' sent when not required.",
    )
    await refused(
        client.create_test_order(**MARKET_BUY, **extra),
        400,
        -1106,
        f"Parameter '{parameter}' sent when not required.",
    )
    assert sandbox.orders(account[0]) == []


async def test_a_limit_order_with_a_quote_quantity_is_refused(client: AsyncClient) -> None:
    await refused(
        client.create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price="30000",
            quoteOrderQty="30",
        ),
        400,
        -1106,
        "Parameter 'quoteOrderQty' sent when not required.",
    )


def test_a_parameter_sent_twice_is_refused(
    sandbox: SandboxServer, account: tuple[str, str]
) -> None:
    response = send_signed(
        sandbox,
        account,
        "POST",
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&quantity=0.002",
    )
    assert_refused(response, 400, -1101, "Duplicate values for a parameter detected.")
    assert sandbox.orders(account[0]) == []


def test_the_query_string_wins_over_the_body(
    sandbox: SandboxServer, account: tuple[str, str]
) -> None:
    """Binance: a parameter sent in both takes the query string's value."""
    query = (
        f"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&timestamp={int(time.time() * 1000)}"
    )
    body = "quantity=0.002"
    signature = hmac.new(account[1].encode(), f"{query}{body}".encode(), hashlib.sha256).hexdigest()
    response = httpx.post(
        f"{sandbox.url}/api/v3/order?{query}",
        content=f"{body}&signature={signature}",
        headers={
            "X-MBX-APIKEY": account[0],
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["origQty"] == "0.00100000"


# -- the API key -------------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [None, ""])
def test_a_missing_api_key_is_a_format_error(
    sandbox: SandboxServer, account: tuple[str, str], api_key: str | None
) -> None:
    response = send_signed(
        sandbox,
        None if api_key is None else account,
        "GET",
        "/api/v3/account",
        "",
        api_key=api_key,
    )
    assert_refused(response, 401, -2014, "API-key format invalid.")


# -- exchangeInfo ------------------------------------------------------------------------------


async def test_symbols_list_notional_as_spot_does_and_no_min_notional(
    sandbox: SandboxServer,
) -> None:
    client = await sandbox.client()
    try:
        info = await client.get_exchange_info()
    finally:
        await client.close_connection()
    for symbol in info["symbols"]:
        filters = {f["filterType"]: f for f in symbol["filters"]}
        assert "MIN_NOTIONAL" not in filters
        assert set(filters["NOTIONAL"]) == {
            "filterType",
            "minNotional",
            "applyMinToMarket",
            "maxNotional",
            "applyMaxToMarket",
            "avgPriceMins",
        }
