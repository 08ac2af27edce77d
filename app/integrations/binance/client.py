"""python-binance's AsyncClient behind our governor and error tree, one client per credential.

Every call spends its Binance weight from the governor first, reports Binance's
X-MBX-USED-WEIGHT-1M back to it after, and comes out as our own errors. Reads are retried on
temporary errors; order placement never is (an unknown outcome is reconciled by the caller).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from binance import AsyncClient
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from app.integrations.binance import metrics
from app.integrations.binance.clock import ExchangeClock
from app.integrations.binance.errors import (
    OrderNotFound,
    RateLimited,
    TemporaryError,
    UnknownOutcome,
    translate,
)
from app.integrations.binance.filters import SymbolRules
from app.integrations.binance.governor import Governor

log = logging.getLogger(__name__)

# Binance's request weights for the endpoints we call.
WEIGHTS = {
    "ping": 1,
    "time": 1,
    "exchange_info": 20,
    "klines": 2,
    "ticker": 2,
    "account": 20,
    "order": 1,
    "get_order": 4,
    "my_trades": 5,
}
_READ_ATTEMPTS = 3


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning("temporary binance error, retrying", extra={"error": str(error)})


class BinanceClient:
    def __init__(self, client: AsyncClient, governor: Governor, clock: ExchangeClock) -> None:
        self._client = client
        self._governor = governor
        self._clock = clock

    @classmethod
    async def open(
        cls,
        governor: Governor,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        testnet: bool = False,
        api_url: str | None = None,
        recv_window_ms: int | None = None,
        clock: ExchangeClock | None = None,
    ) -> BinanceClient:
        """A client ready to sign: `clock` (the process's, shared by its clients) is synced
        first if it is due; without one the client keeps a clock of its own."""
        client = AsyncClient(api_key, api_secret, testnet=testnet)
        if recv_window_ms is not None:
            # Signed requests carry it; the executor's lease is reasoned against it.
            client.REQUEST_RECVWINDOW = recv_window_ms
        if api_url:
            # python-binance reaches another host only through these attributes.
            client.API_URL = client.API_TESTNET_URL = api_url.rstrip("/") + "/api"
        self = cls(client, governor, clock or ExchangeClock())
        try:
            await self._clock.current(self._server_time_ms)
        except BaseException:
            await client.close_connection()
            raise
        return self

    async def close(self) -> None:
        await self._client.close_connection()

    async def _call(
        self,
        weight: int,
        call: Callable[[], Awaitable[Any]],
        *,
        retry: bool,
        granted: Callable[[], Awaitable[None]] | None = None,
    ) -> Any:
        """`granted` runs once the weight is ours and nothing can delay the request any more:
        the last moment to back out (by raising) of an irreversible call."""
        # A Retrying object keeps per-run state: one per call, never shared between tasks.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(_READ_ATTEMPTS if retry else 1),
            retry=retry_if_exception_type(TemporaryError),
            wait=wait_exponential(multiplier=0.4),  # 0.4 s, then 0.8 s
            before_sleep=_log_retry,
            reraise=True,
        )
        return await retrying(self._attempt, weight, call, granted)

    async def _attempt(
        self,
        weight: int,
        call: Callable[[], Awaitable[Any]],
        granted: Callable[[], Awaitable[None]] | None,
    ) -> Any:
        # Read before `granted`: a due sync is a request, and nothing may wait after it.
        offset = await self._clock.current(self._server_time_ms)
        self._client.timestamp_offset = offset.ms
        await self._governor.acquire(weight)
        if granted is not None:
            await granted()
        try:
            result = await call()
        except Exception as exc:
            error = translate(exc)
            await self._observe(getattr(getattr(exc, "response", None), "headers", None))
            if isinstance(error, RateLimited):
                metrics.BANS.inc()
                await self._governor.block_for(error.retry_after_s)
            if error.code == -1021:
                await self._clock.refused(offset, self._server_time_ms)
            raise error from exc
        await self._observe(getattr(self._client.response, "headers", None))
        return result

    async def _observe(self, headers: Any) -> None:
        used = headers.get("X-MBX-USED-WEIGHT-1M") if headers is not None else None
        if used is not None and str(used).isdigit():
            metrics.USED_WEIGHT.set(int(used))
            await self._governor.observe_used_weight(int(used))

    async def _server_time_ms(self) -> int:
        await self._governor.acquire(WEIGHTS["time"])
        try:
            server = await self._client.get_server_time()
        except Exception as exc:
            error = translate(exc)
            # A due sync runs inside an order's attempt, before the order is sent: its failure
            # must not read as an order that may exist.
            if isinstance(error, UnknownOutcome):
                error = TemporaryError(str(error), error.code)
            raise error from exc
        return int(server["serverTime"])

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        info = await self._call(
            WEIGHTS["exchange_info"],
            lambda: self._client.get_exchange_info(),
            retry=True,
        )
        for entry in info["symbols"]:
            if entry["symbol"] == symbol:
                return SymbolRules.from_exchange_info(entry)
        raise OrderNotFound(f"symbol {symbol} is not traded")

    async def klines(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, limit: int = 1000
    ) -> list[list[Any]]:
        rows: list[list[Any]] = await self._call(
            WEIGHTS["klines"],
            lambda: self._client.get_klines(
                symbol=symbol, interval=interval, startTime=start_ms, endTime=end_ms, limit=limit
            ),
            retry=True,
        )
        return rows

    async def price(self, symbol: str) -> Decimal:
        ticker = await self._call(
            WEIGHTS["ticker"], lambda: self._client.get_symbol_ticker(symbol=symbol), retry=True
        )
        return Decimal(ticker["price"])

    async def balances(self) -> dict[str, Decimal]:
        account = await self._call(
            WEIGHTS["account"], lambda: self._client.get_account(), retry=True
        )
        return {b["asset"]: Decimal(b["free"]) for b in account["balances"]}

    async def market_order(
        self,
        symbol: str,
        side: str,
        client_order_id: str,
        size: Callable[[], Awaitable[Decimal]],
    ) -> dict[str, Any]:
        """Send once; an UnknownOutcome means: look the order up before anything else.

        `size` is awaited after the request's weight is granted, immediately before sending:
        it decides the quantity, or raises to send nothing, with no wait left between its
        answer and the request.
        """
        params: dict[str, Any] = {
            "symbol": symbol,
            "side": side,
            "type": "MARKET",
            "newClientOrderId": client_order_id,
            "newOrderRespType": "FULL",
        }

        async def granted() -> None:
            params["quantity"] = format(await size(), "f")

        order: dict[str, Any] = await self._call(
            WEIGHTS["order"],
            lambda: self._client.create_order(**params),
            retry=False,
            granted=granted,
        )
        return order

    async def find_order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        try:
            order: dict[str, Any] = await self._call(
                WEIGHTS["get_order"],
                lambda: self._client.get_order(symbol=symbol, origClientOrderId=client_order_id),
                retry=True,
            )
        except OrderNotFound:
            return None
        return order

    async def order_trades(self, symbol: str, order_id: int) -> list[dict[str, Any]]:
        """The fills of one order (GET order has no commissions; myTrades has)."""
        fills: list[dict[str, Any]] = await self._call(
            WEIGHTS["my_trades"],
            lambda: self._client.get_my_trades(symbol=symbol, orderId=order_id),
            retry=True,
        )
        return fills
