"""The sandbox's market streams against real clients: python-binance's BinanceSocketManager and
the `websockets` library, over real WebSockets, with Binance's connection rules made short."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from binance import BinanceSocketManager
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri

from app.sandbox.server import create_sandbox_app
from app.sandbox.streams import StreamRules
from tests.sandbox_server import SandboxServer, serve_in_thread

D = Decimal
RULES = StreamRules(
    ping_interval_s=0.2, pong_timeout_s=0.5, max_lifetime_s=60, update_interval_s=0.1
)
KLINE_FIELDS = {"t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"}


def _serve(rules: StreamRules) -> Iterator[SandboxServer]:
    with serve_in_thread(create_sandbox_app(stream_rules=rules), **rules.uvicorn_options()) as url:
        yield SandboxServer(url)


@pytest.fixture(scope="module")
def streams() -> Iterator[SandboxServer]:
    yield from _serve(RULES)


def ws_url(server: SandboxServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


@pytest.fixture
async def socket_manager(streams: SandboxServer) -> AsyncIterator[BinanceSocketManager]:
    client = await streams.client()
    manager = BinanceSocketManager(client)
    manager.STREAM_URL = ws_url(streams, "/")
    yield manager
    await client.close_connection()


async def request(ws: ClientConnection, method: str, request_id: int, *params: Any) -> Any:
    """Send one request and read to its answer; paced under the 5-messages-a-second limit."""
    await asyncio.sleep(0.25)
    await ws.send(json.dumps({"method": method, "params": list(params), "id": request_id}))
    while "id" not in (answer := json.loads(await ws.recv())):
        pass
    assert answer["id"] == request_id
    return answer


async def closed_with(ws: ClientConnection) -> Close:
    """Read until the server closes the connection (within a bound); its close frame."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd


async def test_python_binance_receives_a_kline_stream(
    socket_manager: BinanceSocketManager,
) -> None:
    async with socket_manager.kline_socket("BTCUSDT", interval="1m") as stream:
        event = await stream.recv()
    assert event["e"] == "kline" and event["s"] == "BTCUSDT"
    kline = event["k"]
    assert set(kline) == KLINE_FIELDS
    assert kline["i"] == "1m" and kline["t"] % 60_000 == 0 and kline["T"] == kline["t"] + 59_999
    assert D(kline["l"]) <= D(kline["c"]) <= D(kline["h"])
    assert kline["x"] is False


async def test_python_binance_receives_a_combined_stream(
    socket_manager: BinanceSocketManager, streams: SandboxServer
) -> None:
    wanted = ["btcusdt@trade", "ethusdt@bookTicker", "solusdt@miniTicker"]
    seen: dict[str, dict[str, Any]] = {}
    async with socket_manager.multiplex_socket(wanted) as stream:
        while len(seen) < len(wanted):
            frame = await stream.recv()
            seen[frame["stream"]] = frame["data"]
    trade, book, mini = (seen[name] for name in wanted)
    assert trade["e"] == "trade" and trade["s"] == "BTCUSDT" and trade["T"] == trade["t"] * 1000
    assert set(book) == {"u", "s", "b", "B", "a", "A"} and D(book["a"]) > D(book["b"])
    assert mini["e"] == "24hrMiniTicker" and D(mini["l"]) <= D(mini["c"]) <= D(mini["h"])
    # A trade is the tape's at its second: the price REST's 1s candle opens with.
    client = await streams.client()
    try:
        (row,) = await client.get_klines(
            symbol="BTCUSDT", interval="1s", startTime=trade["T"], limit=1
        )
    finally:
        await client.close_connection()
    assert row[0] == trade["T"] and row[1] == trade["p"]


async def test_a_closed_kline_equals_the_rest_kline_of_its_open_time(
    streams: SandboxServer,
) -> None:
    async with connect(ws_url(streams, "/ws/ethusdt@kline_1s")) as ws:
        while not (kline := json.loads(await ws.recv())["k"])["x"]:
            pass
    client = await streams.client()
    try:
        (row,) = await client.get_klines(
            symbol="ETHUSDT", interval="1s", startTime=kline["t"], limit=1
        )
    finally:
        await client.close_connection()
    fields = [kline[k] for k in ("t", "o", "h", "l", "c", "v", "T", "q", "n", "V", "Q", "B")]
    assert fields == row


async def test_live_subscribe_unsubscribe_list_and_properties(streams: SandboxServer) -> None:
    async with connect(ws_url(streams, "/ws")) as ws:
        subscribed = await request(ws, "SUBSCRIBE", 1, "btcusdt@bookTicker", "ethusdt@kline_1m")
        assert subscribed == {"result": None, "id": 1}
        raw = json.loads(await ws.recv())
        assert "stream" not in raw and (raw.get("s") or raw["k"]["s"]) in ("BTCUSDT", "ETHUSDT")
        listed = await request(ws, "LIST_SUBSCRIPTIONS", 2)
        assert listed == {"result": ["btcusdt@bookTicker", "ethusdt@kline_1m"], "id": 2}
        assert await request(ws, "UNSUBSCRIBE", 3, "btcusdt@bookTicker") == {
            "result": None,
            "id": 3,
        }
        assert (await request(ws, "LIST_SUBSCRIPTIONS", 4))["result"] == ["ethusdt@kline_1m"]
        after = [json.loads(await ws.recv()) for _ in range(3)]
        assert all(event["e"] == "kline" for event in after)  # no more bookTicker frames
        assert await request(ws, "SET_PROPERTY", 5, "combined", True) == {"result": None, "id": 5}
        assert (await request(ws, "GET_PROPERTY", 6, "combined"))["result"] is True
        wrapped = json.loads(await ws.recv())
        assert wrapped["stream"] == "ethusdt@kline_1m" and wrapped["data"]["e"] == "kline"


@pytest.mark.parametrize(
    ("sent", "code", "msg"),
    [
        ("{not json", 3, "Invalid JSON: expected property name enclosed in double quotes"),
        ('{"method": "SUBSCRIB", "id": 1}', 2, "Invalid request: unknown variant `SUBSCRIB`"),
        ('{"params": [], "id": 1}', 2, "Invalid request: missing field `method`"),
        ('{"method": "LIST_SUBSCRIPTIONS", "id": 1.5}', 2, "Invalid request: request ID must"),
        ('{"method": "GET_PROPERTY", "params": ["x"], "id": 1}', 0, "Unknown property"),
        ('{"method": "SET_PROPERTY", "params": ["combined", 1], "id": 1}', 1, "Invalid value"),
    ],
)
async def test_a_bad_request_gets_binances_error(
    streams: SandboxServer, sent: str, code: int, msg: str
) -> None:
    async with connect(ws_url(streams, "/ws")) as ws:
        await ws.send(sent)
        answer = json.loads(await ws.recv())
        assert answer["error"]["code"] == code and answer["error"]["msg"].startswith(msg)
        # The connection stays usable.
        assert (await request(ws, "LIST_SUBSCRIPTIONS", 9))["result"] == []


@pytest.mark.parametrize("method", ["SUBSCRIBE", "UNSUBSCRIBE"])
async def test_an_ill_formed_stream_is_refused_and_closes(
    streams: SandboxServer, method: str
) -> None:
    async with connect(ws_url(streams, "/ws")) as ws:
        await ws.send(json.dumps({"method": method, "params": ["btc usdt@trade"], "id": 4}))
        answer = json.loads(await ws.recv())
        assert answer == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 4}
        assert (await closed_with(ws)).code == 1008


async def _silent_client(url: str) -> tuple[list[Frame], Close | None]:
    """A client that never answers a ping: the library's sans-I/O protocol parses frames, and
    the pongs it queues are never sent. Returns the frames read until the server closed."""
    protocol = ClientProtocol(parse_uri(url))
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    protocol.send_request(protocol.connect())
    writer.write(b"".join(protocol.data_to_send()))
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(10):
            while data := await reader.read(65536):
                protocol.receive_data(data)
                protocol.data_to_send()  # the pongs, dropped
                frames += [e for e in protocol.events_received() if isinstance(e, Frame)]
    finally:
        writer.close()
    return frames, protocol.close_rcvd


async def test_no_pong_within_the_timeout_disconnects(streams: SandboxServer) -> None:
    frames, close = await _silent_client(ws_url(streams, "/ws"))
    assert [f.opcode for f in frames][:1] == [Opcode.PING]
    assert close is not None and close.code == 1011  # keepalive ping timeout


async def test_a_client_that_answers_pings_stays_connected(streams: SandboxServer) -> None:
    async with connect(ws_url(streams, "/ws")) as ws:
        await asyncio.sleep(RULES.ping_interval_s + 2 * RULES.pong_timeout_s)
        assert (await request(ws, "LIST_SUBSCRIPTIONS", 1))["result"] == []


async def test_more_than_1024_streams_on_a_connection_closes_it(streams: SandboxServer) -> None:
    async with connect(ws_url(streams, "/ws")) as ws:
        names = [f"btcusdt@unserved{i}" for i in range(1023)] + ["btcusdt@trade"]
        assert (await request(ws, "SUBSCRIBE", 1, *names))["result"] is None
        assert len((await request(ws, "LIST_SUBSCRIPTIONS", 2))["result"]) == 1024
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 3}))
        close = await closed_with(ws)
        assert close.code == 1008 and "Too many streams" in close.reason


async def test_more_than_five_messages_a_second_closes(streams: SandboxServer) -> None:
    async with connect(ws_url(streams, "/ws")) as ws:
        for request_id in range(6):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}))
        answers = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                answers.append(json.loads(await ws.recv())["id"])
    assert answers == [0, 1, 2, 3, 4]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "Too many requests"


async def test_a_connection_is_closed_at_its_maximum_lifetime() -> None:
    short = StreamRules(ping_interval_s=0.2, pong_timeout_s=0.5, max_lifetime_s=0.5)
    for server in _serve(short):
        async with connect(ws_url(server, "/ws/btcusdt@trade")) as ws:
            event = json.loads(await ws.recv())
            assert event["e"] == "trade"
            close = await closed_with(ws)
        assert close.code == 1001


async def test_the_operator_drops_every_connection(streams: SandboxServer) -> None:
    async with (
        connect(ws_url(streams, "/ws/btcusdt@trade")) as first,
        connect(ws_url(streams, "/stream?streams=ethusdt@bookTicker")) as second,
    ):
        await first.recv(), await second.recv()
        dropped = streams.admin("POST", "/sandbox/streams/drop").json()["dropped"]
        assert dropped >= 2
        assert (await closed_with(first)).code == 1001
        assert (await closed_with(second)).code == 1001


async def test_the_operator_pauses_a_symbols_streams(streams: SandboxServer) -> None:
    path = "/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    async with connect(ws_url(streams, path)) as ws:
        await ws.recv()
        streams.admin("POST", "/sandbox/streams/pause", json={"symbol": "BTCUSDT"})
        paused_at = int(time.time() * 1000)
        later = [json.loads(await ws.recv())["data"] for _ in range(10)]
        assert not [b for b in later if b["s"] == "BTCUSDT" and b["u"] > paused_at]
        assert [b for b in later if b["s"] == "ETHUSDT" and b["u"] > paused_at]
        resumed = streams.admin(
            "POST", "/sandbox/streams/pause", json={"symbol": "BTCUSDT", "paused": False}
        )
        assert resumed.json() == {"paused": []}
        while json.loads(await ws.recv())["data"]["s"] != "BTCUSDT":
            pass


async def test_a_price_jump_moves_streams_rest_and_fills(streams: SandboxServer) -> None:
    api_key, api_secret = streams.new_account(USDT="1000", SOL="10")
    client = await streams.client(api_key, api_secret)
    try:
        async with connect(ws_url(streams, "/ws/solusdt@bookTicker")) as ws:
            before = D(json.loads(await ws.recv())["b"])
            jump = streams.admin(
                "POST", "/sandbox/market/jump", json={"symbol": "SOLUSDT", "percent": "-20"}
            ).json()
            assert D(jump["price"]) < D(jump["price_before"]) * D("0.81")
            while (book := json.loads(await ws.recv()))["u"] <= jump["from_ms"]:
                pass
        streamed = D(book["b"])
        rest = D((await client.get_symbol_ticker(symbol="SOLUSDT"))["price"])
        sold = await client.create_order(symbol="SOLUSDT", side="SELL", type="MARKET", quantity="1")
    finally:
        await client.close_connection()
    filled = D(sold["fills"][0]["price"])
    for price in (streamed, rest, filled):
        assert price < before * D("0.81")
    # The jump is a move of 20% at one instant, not a new path: the price then walks as before.
    assert abs(filled - rest) < rest * D("0.01")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sandbox/streams/pause", {"symbol": "DOGEUSDT"}),
        ("/sandbox/market/jump", {"symbol": "BTCUSDT", "percent": "-100"}),
        ("/sandbox/market/jump", {"symbol": "BTCUSDT", "percent": "lots"}),
        ("/sandbox/market/jump", {"symbol": "BTCUSDT", "percent": "Infinity"}),
    ],
)
def test_the_operator_controls_refuse_bad_input(
    streams: SandboxServer, path: str, body: dict[str, str]
) -> None:
    assert httpx.post(f"{streams.url}{path}", json=body).status_code == 400
