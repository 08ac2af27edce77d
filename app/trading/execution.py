"""One interface for every mode: an order intent becomes a recorded trade, at most once.

The trade row is written `pending` (and committed) before anything is sent. Its client order
id is derived from (subscription, intent), and the unique constraints on it and on
(subscription, decision) make a second attempt find the first instead of sending again. An
attempt whose outcome is unknown (timeout, 5xx, crash) is looked up on the exchange by that
client order id before anything is sent again, by whichever worker wins the claim on it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.crypto import Keyring
from app.core.db import session_scope, utcnow
from app.core.errors import NotFound
from app.core.settings import Settings
from app.credentials.service import decrypt_for_execution
from app.integrations.binance.client import BinanceClient
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import ExchangeError, TemporaryError
from app.integrations.binance.filters import SymbolRules
from app.models import AuditLog, Position, Subscription, Trade
from app.trading import metrics, repository
from app.trading.fills import Fill, Side, apply_fill, paper_fill

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"filled", "rejected", "refused"})


@dataclass(frozen=True)
class OrderIntent:
    subscription_id: str
    side: Side
    # What makes this order unique for the subscription: the decision's id, or the key of a
    # protective exit (stop-loss at a given candle, ...).
    intent_key: str
    decision_id: str | None
    reason: str


class AttemptInFlight(TemporaryError):
    """Another worker holds this order attempt and has not gone silent yet: try again later,
    when it has finished or its lease has run out."""


class OrderRefused(Exception):
    """We decided not to send: nothing to sell, wallet empty, under the exchange minimums."""


def client_order_id(subscription_id: str, intent_key: str) -> str:
    """`[A-Za-z0-9_-]{1,36}`: python-binance signs unencoded values, so nothing else is safe."""
    digest = hashlib.sha256(f"{subscription_id}/{intent_key}".encode()).hexdigest()
    return f"bm-{digest[:33]}"


class Executor:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clients: BinanceClients,
        keyring: Keyring,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clients = clients
        self._keyring = keyring
        self._settings = settings

    async def execute(self, intent: OrderIntent) -> Trade:
        trade, owned, fresh = await self._claim(intent)
        if not owned and trade.status not in FINAL_STATUSES:
            raise AttemptInFlight(f"order {trade.client_order_id} is being placed elsewhere")
        if not owned:
            return trade
        try:
            fill = await self._fill(trade, fresh)
        except OrderRefused as exc:
            return await self._finish(trade, "refused", str(exc))
        except TemporaryError as exc:
            await self._finish(trade, "unknown", str(exc))
            raise
        except ExchangeError as exc:
            return await self._finish(trade, "rejected", str(exc))
        return await self._complete(trade, fill)

    async def refuse(self, intent: OrderIntent, reason: str) -> Trade:
        """Record that this intent was not sent (a risk limit), exactly once like an order."""
        trade, owned, _ = await self._claim(intent)
        if not owned:
            return trade
        return await self._finish(trade, "refused", reason)

    async def _claim(self, intent: OrderIntent) -> tuple[Trade, bool, bool]:
        """(trade, whether this call owns the attempt, whether the attempt is brand new)."""
        order_id = client_order_id(intent.subscription_id, intent.intent_key)
        async with session_scope(self._sessionmaker) as session:
            sub = await repository.subscription(session, intent.subscription_id)
            if sub is None:
                raise NotFound("subscription")
            existing = await repository.trade_by_client_order_id(session, order_id)
            if existing is None:
                trade = Trade(
                    subscription_id=sub.id,
                    decision_id=intent.decision_id,
                    client_order_id=order_id,
                    mode=sub.mode,
                    symbol=sub.symbol,
                    side=intent.side.value,
                    status="pending",
                    requested_quote=sub.quote_amount if intent.side is Side.BUY else None,
                    reason=intent.reason,
                )
                try:
                    # Added inside the savepoint so that losing the race forgets the row.
                    async with session.begin_nested():
                        session.add(trade)
                        await session.flush()
                except IntegrityError:
                    existing = await repository.trade_by_client_order_id(session, order_id)
                    assert existing is not None
                else:
                    self._audit(session, trade, "order.attempt")
                    return trade, True, True
            if existing.status in FINAL_STATUSES:
                return existing, False, False
            now = utcnow()
            stale = now - timedelta(seconds=self._settings.order_lease_s)
            owned = await repository.claim_stale(session, existing.id, now, stale)
            if owned:
                self._audit(session, existing, "order.reconcile")
            return existing, owned, False

    async def _fill(self, trade: Trade, fresh: bool) -> Fill:
        rules = await self._clients.rules(trade.symbol)
        if trade.mode == "paper":
            price = await (await self._clients.public()).price(trade.symbol)
            return await self._paper(trade, rules, price)
        client = await self._client_for(trade)
        if not fresh:
            found = await client.find_order(trade.symbol, trade.client_order_id)
            if found is not None:
                log.info("reconciled an order the exchange had", extra={"trade_id": trade.id})
                return await self._binance_fill(client, found)
        price = await client.price(trade.symbol)
        quantity = await self._size(trade, rules, price)
        order = await client.market_order(
            trade.symbol, trade.side, trade.client_order_id, quantity=quantity
        )
        return await self._binance_fill(client, order)

    async def _paper(self, trade: Trade, rules: SymbolRules, price: Decimal) -> Fill:
        quantity = await self._size(trade, rules, price)
        return paper_fill(Side(trade.side), quantity, price, self._settings.paper_slippage, rules)

    async def _size(self, trade: Trade, rules: SymbolRules, price: Decimal) -> Decimal:
        async with self._sessionmaker() as session:
            position = await self._position(session, trade)
        try:
            if trade.side == Side.BUY:
                assert trade.requested_quote is not None
                budget = trade.requested_quote
                if trade.mode == "paper":
                    budget = min(budget, position.quote_balance)
                return rules.size_market_buy(budget, price)
            if position.quantity <= 0:
                raise OrderRefused("no position to sell")
            return rules.size_market_sell(position.quantity, price)
        except ExchangeError as exc:  # sizing refuses before the exchange has to
            raise OrderRefused(str(exc)) from exc

    async def _position(self, session: AsyncSession, trade: Trade) -> Position:
        sub = await session.get(Subscription, trade.subscription_id)
        assert sub is not None
        position = await repository.position_for_update(session, sub)
        if position is None:
            position = Position(
                subscription_id=sub.id,
                symbol=sub.symbol,
                quantity=Decimal(0),
                average_cost=Decimal(0),
                realized_pnl=Decimal(0),
                quote_balance=sub.quote_amount * self._settings.paper_wallet_multiple
                if sub.mode == "paper"
                else Decimal(0),
            )
            session.add(position)
            await session.flush()
        return position

    async def _client_for(self, trade: Trade) -> BinanceClient:
        async with self._sessionmaker() as session:
            sub = await session.get(Subscription, trade.subscription_id)
            if sub is None or sub.credential_id is None:
                raise OrderRefused("the subscription has no exchange credentials")
            credential = await decrypt_for_execution(session, self._keyring, sub.credential_id)
        return await self._clients.for_credential(credential)

    async def _binance_fill(self, client: BinanceClient, order: dict[str, object]) -> Fill:
        fills = order.get("fills")
        if not isinstance(fills, list):
            fills = await client.order_trades(str(order["symbol"]), int(str(order["orderId"])))
        return Fill.from_binance(order, fills)

    async def _complete(self, trade: Trade, fill: Fill) -> Trade:
        rules = await self._clients.rules(trade.symbol)
        async with session_scope(self._sessionmaker) as session:
            position = await self._position(session, trade)
            row = await session.get(Trade, trade.id)
            assert row is not None
            row.realized_pnl = apply_fill(position, Side(trade.side), fill, rules)
            row.status = "filled"
            row.quantity = fill.quantity
            row.price = fill.price
            row.quote_quantity = fill.quote_quantity
            row.fee = fill.fee
            row.fee_asset = fill.fee_asset
            row.exchange_order_id = fill.exchange_order_id
            self._audit(session, row, "order.filled")
        metrics.ORDERS.labels(row.mode, "filled").inc()
        log.info("order filled", extra=self._ids(row))
        return row

    async def _finish(self, trade: Trade, status: str, reason: str) -> Trade:
        async with session_scope(self._sessionmaker) as session:
            row = await session.get(Trade, trade.id)
            assert row is not None
            row.status = status
            row.reason = f"{row.reason}; {reason}" if row.reason else reason
            self._audit(session, row, f"order.{status}")
        metrics.ORDERS.labels(row.mode, status).inc()
        log.info(f"order {status}", extra={**self._ids(row), "reason": row.reason})
        return row

    @staticmethod
    def _ids(trade: Trade) -> dict[str, object]:
        return {
            "trade_id": trade.id,
            "subscription_id": trade.subscription_id,
            "decision_id": trade.decision_id,
            "client_order_id": trade.client_order_id,
        }

    @staticmethod
    def _audit(session: AsyncSession, trade: Trade, action: str) -> None:
        session.add(
            AuditLog(
                action=action,
                resource_type="trade",
                resource_id=trade.id,
                outcome=trade.status,
            )
        )
