"""The sandbox's HTTP face: Binance's spot REST paths, signatures, weights and faults.

Parameters are read as Binance reads them (app/sandbox/params.py). Signed requests are checked
as Binance checks them: HMAC-SHA256 over the raw query string followed by the raw body (the
signature parameter left out), the X-MBX-APIKEY header, and timestamp/recvWindow. Every answer
carries X-MBX-USED-WEIGHT-1M, counted per client IP per wall-clock minute; past the limit a 429
with Retry-After, and a 418 ban for repeat offenders.
The market streams (/ws, /stream) are app/sandbox/streams.py's, on the same port.
The /sandbox/* paths are the operator's: accounts, limits, fault injection, inspection, stream
and price control. They answer loopback clients, and others only with the operator token in
X-Sandbox-Operator-Token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from app.sandbox.exchange import Account, Exchange, SandboxError, spec_of
from app.sandbox.market import INTERVAL_MS, SYMBOLS, Market
from app.sandbox.params import read_params
from app.sandbox.streams import StreamHub, StreamRules

MAX_RECV_WINDOW_MS = 60_000
FUTURE_TOLERANCE_MS = 1_000


@dataclass
class Limits:
    weight_per_minute: int = 6000
    violations_before_ban: int = 3
    ban_seconds: float = 120.0


@dataclass
class Faults:
    latency_ms: int = 0
    error_5xx_next: int = 0  # answer 503 without doing anything
    executed_then_5xx_next: int = 0  # place the order, then answer 503


@dataclass
class _IpUsage:
    minute: int = -1
    used: int = 0
    violations: int = 0
    banned_until: float = 0.0


@dataclass
class SandboxState:
    exchange: Exchange
    streams: StreamHub
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)
    usage: dict[str, _IpUsage] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    # Request weight granted, per endpoint: what a benchmark charges against the budget.
    weight: Counter[str] = field(default_factory=Counter)


Handler = Callable[[Request, dict[str, str], Account | None], Awaitable[Any]]


def _error(status: int, code: int, msg: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status_code=status, headers=headers)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _total_params(query: str, body: str) -> tuple[str, str | None]:
    """(the signed payload, the signature): Binance concatenates query string and body."""
    signature = None
    parts = []
    for raw in (query, body):
        kept = []
        for pair in raw.split("&") if raw else []:
            if pair.startswith("signature="):
                signature = pair.removeprefix("signature=")
            else:
                kept.append(pair)
        parts.append("&".join(kept))
    return "".join(parts), signature


class Sandbox:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # -- the request pipeline ------------------------------------------------------------

    def endpoint(
        self,
        handler: Handler,
        weight: Callable[[dict[str, str]], int],
        *,
        signed: bool = False,
        places_order: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            state = self.state
            endpoint = f"{request.method} {request.url.path}"
            state.requests[endpoint] += 1
            if state.faults.latency_ms:
                await asyncio.sleep(state.faults.latency_ms / 1000)
            body = (await request.body()).decode()
            query = request.url.query
            bad_input: SandboxError | None = None
            try:
                params = read_params(query, body)
            except SandboxError as exc:
                # Refused, but after the IP's limits: it costs the endpoint's plain weight.
                params, bad_input = {}, exc
            cost = weight(params)
            refused = self._spend_weight(request, cost)
            if refused is None:
                state.weight[endpoint] += cost
            headers = {"X-MBX-USED-WEIGHT-1M": str(self._used(request))}
            if refused is not None:
                return refused
            if state.faults.error_5xx_next > 0:
                state.faults.error_5xx_next -= 1
                return Response("", status_code=503, headers=headers)
            try:
                if bad_input is not None:
                    raise bad_input
                account = self._authenticate(request, query, body, params) if signed else None
                result = await handler(request, params, account)
            except SandboxError as exc:
                return _error(exc.status, exc.code, exc.msg, headers)
            if places_order and state.faults.executed_then_5xx_next > 0:
                state.faults.executed_then_5xx_next -= 1
                return Response("", status_code=503, headers=headers)
            return JSONResponse(result, headers=headers)

        return run

    def _used(self, request: Request) -> int:
        usage = self.state.usage.get(self._ip(request))
        return usage.used if usage is not None and usage.minute == _now_ms() // 60_000 else 0

    @staticmethod
    def _ip(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def _spend_weight(self, request: Request, weight: int) -> JSONResponse | None:
        limits = self.state.limits
        usage = self.state.usage.setdefault(self._ip(request), _IpUsage())
        now = time.time()
        minute = int(now // 60)
        if usage.minute != minute:
            usage.minute, usage.used = minute, 0
        if now < usage.banned_until:
            retry = str(int(usage.banned_until - now) + 1)
            return _error(
                418,
                -1003,
                "Way too many requests; IP banned.",
                {"Retry-After": retry, "X-MBX-USED-WEIGHT-1M": str(usage.used)},
            )
        if usage.used + weight > limits.weight_per_minute:
            usage.violations += 1
            if usage.violations >= limits.violations_before_ban:
                usage.banned_until = now + limits.ban_seconds
                retry = str(int(limits.ban_seconds))
                return _error(
                    418,
                    -1003,
                    "Way too many requests; IP banned.",
                    {"Retry-After": retry, "X-MBX-USED-WEIGHT-1M": str(usage.used)},
                )
            retry = str(int((minute + 1) * 60 - now) + 1)
            return _error(
                429,
                -1003,
                "Too much request weight used; please use the websocket for live updates "
                "to avoid polling the API.",
                {"Retry-After": retry, "X-MBX-USED-WEIGHT-1M": str(usage.used)},
            )
        usage.used += weight
        return None

    def _authenticate(
        self, request: Request, query: str, body: str, params: dict[str, str]
    ) -> Account:
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            raise SandboxError(-2014, "API-key format invalid.", 401)
        account = self.state.exchange.accounts.get(api_key)
        if account is None:
            raise SandboxError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if "timestamp" not in params:
            raise SandboxError(
                -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )
        timestamp = int(params["timestamp"])
        window = Decimal(params.get("recvWindow", "5000"))
        if window > MAX_RECV_WINDOW_MS:
            raise SandboxError(-1131, "recvWindow must be less than 60000")
        now = _now_ms()
        if timestamp >= now + FUTURE_TOLERANCE_MS:
            raise SandboxError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > window:
            raise SandboxError(-1021, "Timestamp for this request is outside of the recvWindow.")
        payload, signature = _total_params(query, body)
        expected = hmac.new(account.api_secret.encode(), payload.encode(), hashlib.sha256)
        # Compared as bytes: a header may carry any latin-1 character, which str compare refuses.
        sent = (signature or "").encode("latin-1")
        if signature is None or not hmac.compare_digest(expected.hexdigest().encode(), sent):
            raise SandboxError(-1022, "Signature for this request is not valid.")
        return account

    # -- public endpoints -----------------------------------------------------------------

    async def ping(self, *_: object) -> dict[str, Any]:
        return {}

    async def server_time(self, *_: object) -> dict[str, Any]:
        return {"serverTime": _now_ms()}

    async def exchange_info(self, _r: Request, params: dict[str, str], _a: object) -> Any:
        wanted = [params["symbol"]] if "symbol" in params else list(SYMBOLS)
        if "symbols" in params:
            wanted = [s.strip('"[] ') for s in params["symbols"].split(",")]
        return {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.state.limits.weight_per_minute,
                },
            ],
            "exchangeFilters": [],
            "symbols": [symbol_info(spec_of(symbol).symbol) for symbol in wanted],
        }

    async def klines(self, _r: Request, params: dict[str, str], _a: object) -> Any:
        spec = spec_of(params.get("symbol"))
        interval = params.get("interval", "")
        if interval not in INTERVAL_MS:
            raise SandboxError(-1120, "Invalid interval.")
        limit = min(int(params.get("limit", "500")), 1000)
        start = int(params["startTime"]) if "startTime" in params else None
        end = int(params["endTime"]) if "endTime" in params else None
        return self.state.exchange.market.klines(
            spec.symbol, interval, _now_ms(), start, end, limit
        )

    async def ticker_price(self, _r: Request, params: dict[str, str], _a: object) -> Any:
        market, now = self.state.exchange.market, _now_ms()
        if "symbol" in params:
            spec = spec_of(params["symbol"])
            return {"symbol": spec.symbol, "price": str(market.price(spec.symbol, now))}
        return [{"symbol": s, "price": str(market.price(s, now))} for s in SYMBOLS]

    # -- signed endpoints -----------------------------------------------------------------

    async def account(self, _r: Request, _p: dict[str, str], account: Account | None) -> Any:
        assert account is not None
        self.state.exchange.fill_crossed_limits(account, _now_ms())
        assets = sorted(set(account.free) | set(account.locked))
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "updateTime": _now_ms(),
            "accountType": "SPOT",
            "permissions": ["SPOT"],
            "balances": [
                {
                    "asset": a,
                    "free": _money(account.balance(a)),
                    "locked": _money(account.locked.get(a, Decimal(0))),
                }
                for a in assets
            ],
        }

    async def new_order(self, _r: Request, params: dict[str, str], account: Account | None) -> Any:
        assert account is not None
        order = self.state.exchange.place(account, params, _now_ms())
        return _order_response(order, params.get("newOrderRespType", "FULL"))

    async def test_order(self, _r: Request, params: dict[str, str], account: Account | None) -> Any:
        assert account is not None
        return self.state.exchange.place(account, params, _now_ms(), test=True)

    async def get_order(self, _r: Request, params: dict[str, str], account: Account | None) -> Any:
        assert account is not None
        self.state.exchange.fill_crossed_limits(account, _now_ms())
        return _without_fills(self.state.exchange.find(account, params))

    async def cancel_order(
        self, _r: Request, params: dict[str, str], account: Account | None
    ) -> Any:
        assert account is not None
        order = self.state.exchange.cancel(account, params, _now_ms())
        return {**_without_fills(order), "origClientOrderId": order["clientOrderId"]}

    async def open_orders(
        self, _r: Request, params: dict[str, str], account: Account | None
    ) -> Any:
        assert account is not None
        self.state.exchange.fill_crossed_limits(account, _now_ms())
        symbol = params.get("symbol")
        if symbol is not None:
            spec_of(symbol)
        return [
            _without_fills(o)
            for o in account.orders
            if o["status"] == "NEW" and symbol in (None, o["symbol"])
        ]

    async def all_orders(self, _r: Request, params: dict[str, str], account: Account | None) -> Any:
        assert account is not None
        symbol = spec_of(params.get("symbol")).symbol
        self.state.exchange.fill_crossed_limits(account, _now_ms())
        return [_without_fills(o) for o in account.orders if o["symbol"] == symbol]

    async def my_trades(self, _r: Request, params: dict[str, str], account: Account | None) -> Any:
        assert account is not None
        symbol = spec_of(params.get("symbol")).symbol
        order_id = params.get("orderId")
        return [
            t
            for t in account.trades
            if t["symbol"] == symbol and (order_id is None or str(t["orderId"]) == order_id)
        ]

    # -- the operator's endpoints ---------------------------------------------------------

    async def put_account(self, request: Request) -> Response:
        ((api_key, api_secret, balances),) = parse_accounts([await request.json()])
        self.state.exchange.add_account(api_key, api_secret, balances)
        return JSONResponse({"api_key": api_key})

    async def put_config(self, request: Request) -> Response:
        body = await request.json()
        limits = self.state.limits
        limits.weight_per_minute = int(body.get("weight_per_minute", limits.weight_per_minute))
        limits.violations_before_ban = int(
            body.get("violations_before_ban", limits.violations_before_ban)
        )
        limits.ban_seconds = float(body.get("ban_seconds", limits.ban_seconds))
        if body.get("reset_usage"):
            self.state.usage.clear()
        return JSONResponse(vars(limits))

    async def put_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.faults = Faults()
        else:
            for name, value in (await request.json()).items():
                if not hasattr(self.state.faults, name):
                    return JSONResponse({"error": f"unknown fault {name}"}, status_code=400)
                setattr(self.state.faults, name, int(value))
        return JSONResponse(vars(self.state.faults))

    async def list_orders(self, request: Request) -> Response:
        account = self.state.exchange.accounts.get(request.query_params.get("api_key", ""))
        if account is None:
            return JSONResponse({"error": "unknown account"}, status_code=404)
        return JSONResponse(account.orders)

    async def drop_streams(self, _request: Request) -> Response:
        return JSONResponse({"dropped": await self.state.streams.drop_all()})

    async def pause_stream(self, request: Request) -> Response:
        body = await request.json()
        try:
            symbol = spec_of(body.get("symbol")).symbol
        except SandboxError as exc:
            return _error(400, exc.code, exc.msg, {})
        paused = self.state.streams.paused
        if body.get("paused", True):
            paused.add(symbol)
        else:
            paused.discard(symbol)
        return JSONResponse({"paused": sorted(paused)})

    async def jump_price(self, request: Request) -> Response:
        body = await request.json()
        market, now = self.state.exchange.market, _now_ms()
        try:
            symbol = spec_of(body.get("symbol")).symbol
            before = market.price(symbol, now)
            market.jump(symbol, Decimal(str(body.get("percent"))), now)
        except SandboxError as exc:
            return _error(400, exc.code, exc.msg, {})
        except (ArithmeticError, ValueError) as exc:  # not a number, or -100% and below
            return JSONResponse({"msg": f"percent: {exc}"}, status_code=400)
        after = market.price(symbol, now + 1)
        return JSONResponse(
            {"symbol": symbol, "from_ms": now + 1, "price_before": str(before), "price": str(after)}
        )

    async def stats(self, _request: Request) -> Response:
        return JSONResponse(
            {"requests": dict(self.state.requests), "weight": dict(self.state.weight)}
        )


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.00000001")), "f")


def symbol_info(symbol: str) -> dict[str, Any]:
    spec = SYMBOLS[symbol]
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _money(spec.tick_size),
                "maxPrice": "1000000.00000000",
                "tickSize": _money(spec.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _money(spec.min_qty),
                "maxQty": "9000.00000000",
                "stepSize": _money(spec.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": _money(spec.min_notional),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
    }


def _without_fills(order: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in order.items() if k not in ("fills", "transactTime")}


def _order_response(order: dict[str, Any], kind: str) -> dict[str, Any]:
    ack = {
        k: order[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")
    }
    if kind == "ACK":
        return ack
    result = {k: v for k, v in order.items() if k not in ("fills", "time", "updateTime")}
    if kind == "RESULT":
        return result
    return {**result, "fills": order["fills"]}


def _klines_weight(params: dict[str, str]) -> int:
    limit = int(params.get("limit", "500"))
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def parse_accounts(entries: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Decimal]]]:
    """`[{"api_key", "api_secret", "balances": {"USDT": "10000"}}]` as create_sandbox_app takes."""
    return [
        (
            entry["api_key"],
            entry["api_secret"],
            {asset: Decimal(str(amount)) for asset, amount in entry.get("balances", {}).items()},
        )
        for entry in entries
    ]


OPERATOR_TOKEN_HEADER = "X-Sandbox-Operator-Token"  # noqa: S105 - a header's name
OperatorHandler = Callable[[Request], Awaitable[Response]]


def operator_only(handler: OperatorHandler, token: str | None) -> OperatorHandler:
    """`handler` for loopback clients, and for others that send the operator token.

    Whoever reaches an operator path credits any account with any balance, throttles or
    breaks the exchange for every client: bound to another interface (a container's), the
    sandbox still keeps them to its operator.
    """

    async def guarded(request: Request) -> Response:
        sent = request.headers.get(OPERATOR_TOKEN_HEADER, "")
        if _from_loopback(request) or (
            token and hmac.compare_digest(sent.encode("latin-1"), token.encode())
        ):
            return await handler(request)
        return JSONResponse(
            {"msg": f"operator paths answer loopback clients, or {OPERATOR_TOKEN_HEADER}"},
            status_code=403,
        )

    return guarded


def _from_loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an address (a Unix socket's peer, a test client's name)
        return False


def create_sandbox_app(
    accounts: list[tuple[str, str, dict[str, Decimal]]] | None = None,
    *,
    seed: int = 7,
    limits: Limits | None = None,
    operator_token: str | None = None,
    stream_rules: StreamRules | None = None,
) -> Starlette:
    """The sandbox's app; serve it with `stream_rules.uvicorn_options()` (the streams' ping
    and pong timings are the server's)."""
    market = Market(seed)
    exchange = Exchange(market)
    for api_key, api_secret, balances in accounts or []:
        exchange.add_account(api_key, api_secret, balances)
    streams = StreamHub(market, stream_rules or StreamRules())
    sandbox = Sandbox(SandboxState(exchange, streams, limits or Limits()))
    routes: list[BaseRoute] = [
        Route(path, sandbox.endpoint(handler, weight, **options), methods=[method])
        for path, method, handler, weight, options in (
            _public_endpoints(sandbox) + _signed_endpoints(sandbox)
        )
    ]
    routes += [
        Route(path, operator_only(handler, operator_token), methods=methods)
        for path, handler, methods in (
            ("/sandbox/accounts", sandbox.put_account, ["POST"]),
            ("/sandbox/config", sandbox.put_config, ["POST"]),
            ("/sandbox/faults", sandbox.put_faults, ["POST", "DELETE"]),
            ("/sandbox/orders", sandbox.list_orders, ["GET"]),
            ("/sandbox/stats", sandbox.stats, ["GET"]),
            ("/sandbox/streams/drop", sandbox.drop_streams, ["POST"]),
            ("/sandbox/streams/pause", sandbox.pause_stream, ["POST"]),
            ("/sandbox/market/jump", sandbox.jump_price, ["POST"]),
        )
    ]
    routes += [
        WebSocketRoute(path, streams.serve) for path in ("/ws", "/ws/{streams:path}", "/stream")
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return app


# A Binance path: (path, method, handler, its request weight, Sandbox.endpoint's options).
Endpoint = tuple[str, str, Handler, Callable[[dict[str, str]], int], dict[str, bool]]


def _public_endpoints(sandbox: Sandbox) -> list[Endpoint]:
    return [
        ("/api/v3/ping", "GET", sandbox.ping, lambda p: 1, {}),
        ("/api/v3/time", "GET", sandbox.server_time, lambda p: 1, {}),
        ("/api/v3/exchangeInfo", "GET", sandbox.exchange_info, lambda p: 20, {}),
        ("/api/v3/klines", "GET", sandbox.klines, _klines_weight, {}),
        (
            "/api/v3/ticker/price",
            "GET",
            sandbox.ticker_price,
            lambda p: 2 if "symbol" in p else 4,
            {},
        ),
    ]


def _signed_endpoints(sandbox: Sandbox) -> list[Endpoint]:
    return [
        ("/api/v3/account", "GET", sandbox.account, lambda p: 20, {"signed": True}),
        (
            "/api/v3/order",
            "POST",
            sandbox.new_order,
            lambda p: 1,
            {"signed": True, "places_order": True},
        ),
        ("/api/v3/order/test", "POST", sandbox.test_order, lambda p: 1, {"signed": True}),
        ("/api/v3/order", "GET", sandbox.get_order, lambda p: 4, {"signed": True}),
        ("/api/v3/order", "DELETE", sandbox.cancel_order, lambda p: 1, {"signed": True}),
        (
            "/api/v3/openOrders",
            "GET",
            sandbox.open_orders,
            lambda p: 6 if "symbol" in p else 80,
            {"signed": True},
        ),
        ("/api/v3/allOrders", "GET", sandbox.all_orders, lambda p: 20, {"signed": True}),
        (
            "/api/v3/myTrades",
            "GET",
            sandbox.my_trades,
            lambda p: 5 if "orderId" in p else 20,
            {"signed": True},
        ),
    ]
