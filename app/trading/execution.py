"""One interface for every mode: an order intent becomes a recorded trade, at most once.

An attempt is a `trades` row, written `pending` (and committed) before anything is sent. Its
client order id derives from (subscription, intent), and unique constraints make a second
attempt find the first instead of sending again.

Ownership is a lease with a fencing token (`fence`). The owner proves it still owns the
attempt with one conditional UPDATE immediately before sending (after the request's exchange
weight is granted, so that no wait sits between the check and the request) and again when it
records the outcome. Whoever takes over an attempt whose lease ran out asks the exchange by
client order id before it sends anything; the lease outlasts Binance's receive window, so an
order the taker does not find can no longer appear.

An order for a decision is sent only while the decision is fresh (`send_before`); a stale
one is recorded as refused, never sent. Paper orders never leave the process, so they need
no fence: attempt, check, size, fill and position change are one transaction, for a batch
of renters at once (flows.PAPER_BATCH); only an attempt that exists already goes the fenced
way. A subscription's sells serialise: each is sized on what is held minus what its sells in
flight have asked for.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.crypto import Keyring
from app.core.db import new_id, session_scope, utcnow
from app.core.errors import NotFound
from app.core.settings import Settings
from app.credentials.service import decrypt_for_execution
from app.integrations.binance.client import BinanceClient
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import ExchangeError, TemporaryError
from app.integrations.binance.filters import SymbolRules
from app.models import AuditLog, Position, Subscription, Trade
from app.subscriptions.rules import reference_capital
from app.trading import metrics, repository
from app.trading.fills import Fill, Side, apply_fill, buy_quantity, paper_fill

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
    # A decision's orders only: never sent at or after this instant.
    send_before: datetime | None = None


class AttemptInFlight(TemporaryError):
    """Another worker holds this order attempt and its lease has not run out: try again
    later, when it has finished or the reconciler has resolved it."""


class AttemptLost(Exception):
    """Another worker took this attempt over: what we were about to do is theirs now."""


class OrderRefused(Exception):
    """We decided not to send: nothing to sell, wallet empty, under the minimums, stale."""


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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clients = clients
        self._keyring = keyring
        self._settings = settings
        self._clock = clock

    async def execute(
        self,
        intent: OrderIntent,
        price: Decimal | None = None,
        subscription: Subscription | None = None,
    ) -> Trade:
        """`price`: the symbol's price as the caller read it for a whole batch of renters
        (one ticker read per symbol and job, not one per renter: Binance weight is per IP);
        None reads it here. `subscription`: the intent's, when the caller has read it."""
        sub = subscription or await self._subscription(intent.subscription_id)
        if sub.mode == "paper":
            done = await self.fill_paper([(sub, intent)], price)
            if done is not None:
                return done[0]
        trade, fence = await self._claim(sub, intent)
        if fence is not None:
            return await self._attempt(trade, fence, price, sub)
        if trade.status not in FINAL_STATUSES:
            raise AttemptInFlight(f"order {trade.client_order_id} is being placed elsewhere")
        return trade

    async def refuse(self, sub: Subscription, intent: OrderIntent, reason: str) -> Trade:
        """Record that this intent was not sent (a risk limit), exactly once like an order."""
        trade, fence = await self._claim(sub, intent)
        if fence is None:
            return trade
        return await self._finish(trade, fence, "refused", reason)

    async def resume(self, trade_id: str) -> Trade | None:
        """See through an unresolved attempt whose lease has run out (the reconciler's job);
        None when another worker holds it."""
        now = self._clock()
        async with session_scope(self._sessionmaker) as session:
            fence = await repository.take_over(session, trade_id, now, self._lease_end(now))
            if fence is None:
                return None
            trade = await session.get(Trade, trade_id)
            assert trade is not None
            self._audit(session, trade, "order.reconcile")
        return await self._attempt(trade, fence)

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._settings.order_lease_s)

    async def _subscription(self, sub_id: str) -> Subscription:
        async with self._sessionmaker() as session:
            sub = await repository.subscription(session, sub_id)
        if sub is None:
            raise NotFound("subscription")
        return sub

    def _new_attempt(self, sub: Subscription, intent: OrderIntent) -> Trade:
        """The first attempt at an intent, owned (fence 1) for a lease from now."""
        return Trade(
            # Both known before the row is written: its audit row may come first, and the
            # attempt starts now, not when a batch of them is inserted.
            id=new_id(),
            created_at=utcnow(),
            subscription_id=sub.id,
            decision_id=intent.decision_id,
            client_order_id=client_order_id(sub.id, intent.intent_key),
            mode=sub.mode,
            symbol=sub.symbol,
            side=intent.side.value,
            status="pending",
            fence=1,
            lease_until=self._lease_end(self._clock()),
            send_before=intent.send_before,
            requested_quote=sub.quote_amount if intent.side is Side.BUY else None,
            reason=intent.reason,
        )

    async def fill_paper(
        self, orders: Sequence[tuple[Subscription, OrderIntent]], price: Decimal | None = None
    ) -> list[Trade] | None:
        """Paper orders on one symbol, e.g. a decision's for a chunk of renters, in the order
        given. A paper order never leaves the process, so there is nothing to fence against:
        every attempt, its fill (or refusal), the positions and the audit rows commit
        together in one transaction, or not at all. None when that cannot be: one of these
        intents has an attempt already (an earlier run's or a racing one's), or a new
        position raced into existence; `execute`, renter by renter, resolves those."""
        (symbol,) = {sub.symbol for sub, _ in orders}
        assert all(sub.mode == "paper" for sub, _ in orders)
        rules = await self._clients.rules(symbol)
        if price is None:
            price = await (await self._clients.public()).price(symbol)
        trades = [self._new_attempt(sub, intent) for sub, intent in orders]
        try:
            async with session_scope(self._sessionmaker) as session:
                # The first write: on SQLite it serialises this transaction with other
                # writers before anything is read.
                for trade in trades:
                    self._audit(session, trade, "order.attempt")
                await session.flush()
                positions = await self._positions(session, [sub for sub, _ in orders])
                sellers = [t.subscription_id for t in trades if t.side == Side.SELL]
                reserved = await repository.reserved_by_sells(session, sellers)
                now = self._clock()
                for trade in trades:
                    position = positions[trade.subscription_id]
                    try:
                        if trade.send_before is not None and trade.send_before <= now:
                            raise OrderRefused(_stale(trade.send_before))
                        reserve = reserved.get(trade.subscription_id, Decimal(0))
                        quantity = self._size(trade, position, reserve, rules, price)
                    except OrderRefused as exc:
                        trade.status = "refused"
                        trade.reason = _with_reason(trade.reason, str(exc))
                    else:
                        fill = paper_fill(
                            Side(trade.side), quantity, price, self._settings.paper_slippage, rules
                        )
                        trade.sent_at = now
                        for column, value in _filled(position, trade, fill, rules).items():
                            setattr(trade, column, value)
                    self._audit(session, trade, f"order.{trade.status}")
                # Inserted resolved: a unique client order id already there stops them all.
                session.add_all(trades)
        except IntegrityError:
            return None
        return [self._resolved(trade) for trade in trades]

    async def _claim(self, sub: Subscription, intent: OrderIntent) -> tuple[Trade, int | None]:
        """The attempt, and our fence when this call owns it."""
        trade = self._new_attempt(sub, intent)
        try:
            async with session_scope(self._sessionmaker) as session:
                session.add(trade)
                self._audit(session, trade, "order.attempt")
        except IntegrityError as exc:
            # Its unique client order id is taken: the attempt exists (on MySQL, a racing
            # one's insert is waited for until it commits).
            return await self._existing(trade.client_order_id, exc)
        return trade, trade.fence

    async def _existing(self, order_id: str, error: IntegrityError) -> tuple[Trade, int | None]:
        """An existing attempt, and our fence when its owner's lease had run out."""
        now = self._clock()
        async with session_scope(self._sessionmaker) as session:
            existing = await repository.trade_by_client_order_id(session, order_id)
            if existing is None:
                raise error  # another constraint failed, not the attempt's uniqueness
            if existing.status in FINAL_STATUSES:
                return existing, None
            fence = await repository.take_over(session, existing.id, now, self._lease_end(now))
            if fence is not None:
                # Read again: the previous owner may have sent the order since our first read.
                await session.refresh(existing)
                self._audit(session, existing, "order.reconcile")
            return existing, fence

    async def _attempt(
        self,
        trade: Trade,
        fence: int,
        price: Decimal | None = None,
        sub: Subscription | None = None,
    ) -> Trade:
        """`sub`: the attempt's subscription, when the caller has it."""
        try:
            if trade.mode == "paper":
                return await self._paper(trade, fence, price)
            return await self._on_exchange(trade, fence, price, sub)
        except AttemptLost:
            log.warning("order attempt taken over by another worker", extra=self._ids(trade))
            return await self._reload(trade)
        except OrderRefused as exc:
            return await self._finish(trade, fence, "refused", str(exc))
        except TemporaryError as exc:
            await self._unresolved(trade, fence, str(exc))
            raise
        except ExchangeError as exc:
            return await self._finish(trade, fence, "rejected", str(exc))

    async def _paper(self, trade: Trade, fence: int, price: Decimal | None) -> Trade:
        rules = await self._clients.rules(trade.symbol)
        if price is None:
            price = await (await self._clients.public()).price(trade.symbol)
        async with session_scope(self._sessionmaker) as session:
            await self._commit_to_send(session, trade, fence)
            position = await self._position(session, trade)
            reserve = await self._reserved(session, trade)
            quantity = self._size(trade, position, reserve, rules, price)
            fill = paper_fill(
                Side(trade.side), quantity, price, self._settings.paper_slippage, rules
            )
            row = await self._record_fill(session, trade, fence, position, fill, rules)
        return self._resolved(row)

    async def _on_exchange(
        self, trade: Trade, fence: int, price: Decimal | None, sub: Subscription | None
    ) -> Trade:
        rules = await self._clients.rules(trade.symbol)
        client = await self._client_for(sub or await self._subscription(trade.subscription_id))
        if trade.fence > 1:
            # Taken over: whatever the last owner did, the exchange knows whether it happened.
            found = await client.find_order(trade.symbol, trade.client_order_id)
            if found is not None:
                log.info("reconciled an order the exchange had", extra=self._ids(trade))
                return await self._complete(trade, fence, await self._binance_fill(client, found))
        quote_price = price if price is not None else await client.price(trade.symbol)

        async def size() -> Decimal:
            async with session_scope(self._sessionmaker) as session:
                if trade.side == Side.BUY:
                    # It spends the renter's own quote, which the exchange checks: no position
                    # of ours to lock, and marked sent with what it asks for in one write.
                    quantity = self._size(trade, None, Decimal(0), rules, quote_price)
                    await self._commit_to_send(session, trade, fence, requested_quantity=quantity)
                else:
                    await self._commit_to_send(session, trade, fence)
                    position = await self._position(session, trade)
                    reserve = await self._reserved(session, trade)
                    quantity = self._size(trade, position, reserve, rules, quote_price)
                    await repository.fenced_update(
                        session, trade.id, fence, requested_quantity=quantity
                    )
            return quantity

        order = await client.market_order(trade.symbol, trade.side, trade.client_order_id, size)
        return await self._complete(trade, fence, await self._binance_fill(client, order))

    async def _commit_to_send(
        self, session: AsyncSession, trade: Trade, fence: int, **values: object
    ) -> None:
        """Prove we still own a fresh attempt and mark it sent (leased for as long as the
        exchange could still execute it), with `values` of the attempt."""
        now = self._clock()
        sent = await repository.fenced_update(
            session,
            trade.id,
            fence,
            send_by=now,
            sent_at=now,
            lease_until=self._lease_end(now),
            **values,
        )
        if not sent:
            row = await session.get(Trade, trade.id)
            assert row is not None
            if row.fence != fence or row.status in FINAL_STATUSES:
                raise AttemptLost()
            raise OrderRefused(_stale(row.send_before))

    @staticmethod
    async def _reserved(session: AsyncSession, trade: Trade) -> Decimal:
        """For a sell, what the subscription's other sells in flight may still sell."""
        if trade.side == Side.SELL:
            return await repository.reserved_by_others(session, trade)
        return Decimal(0)

    def _size(
        self,
        trade: Trade,
        position: Position | None,
        reserved: Decimal,
        rules: SymbolRules,
        price: Decimal,
    ) -> Decimal:
        """`position`: locked, needed for a sell and a paper buy (whose wallet it holds);
        `reserved`: what the subscription's other sells in flight may still sell."""
        try:
            if trade.side == Side.BUY:
                assert trade.requested_quote is not None
                budget = trade.requested_quote
                if trade.mode == "paper":
                    assert position is not None
                    budget = min(budget, position.quote_balance)
                return buy_quantity(budget, price, self._settings.paper_slippage, rules)
            assert position is not None
            available = position.quantity - reserved
            if available <= 0:
                raise OrderRefused("no position to sell")
            return rules.size_market_sell(available, price)
        except ExchangeError as exc:  # sizing refuses before the exchange has to
            raise OrderRefused(str(exc)) from exc

    async def _position(self, session: AsyncSession, trade: Trade) -> Position:
        """The attempt's position row, locked until the transaction ends (a new one if none)."""
        position = await repository.position_for_update(session, trade.subscription_id)
        if position is None:
            wallet = Decimal(0)
            if trade.mode == "paper":
                sub = await session.get(Subscription, trade.subscription_id)
                assert sub is not None
                wallet = reference_capital(sub, self._settings)
            position = self._new_position(session, trade.subscription_id, trade.symbol, wallet)
        return position

    async def _positions(
        self, session: AsyncSession, subs: Sequence[Subscription]
    ) -> dict[str, Position]:
        """The positions of many paper subscriptions, locked, by subscription."""
        positions = await repository.positions_of(session, [s.id for s in subs], lock=True)
        for sub in subs:
            if sub.id not in positions:
                wallet = reference_capital(sub, self._settings)
                positions[sub.id] = self._new_position(session, sub.id, sub.symbol, wallet)
        return positions

    @staticmethod
    def _new_position(
        session: AsyncSession, subscription_id: str, symbol: str, wallet: Decimal
    ) -> Position:
        """A new subscription's position is flat; `wallet`: the paper wallet (the reference
        capital), none for testnet and live. Inserted when the transaction commits."""
        position = Position(
            subscription_id=subscription_id,
            symbol=symbol,
            quantity=Decimal(0),
            average_cost=Decimal(0),
            realized_pnl=Decimal(0),
            quote_balance=wallet,
        )
        session.add(position)
        return position

    async def _client_for(self, sub: Subscription) -> BinanceClient:
        if sub.credential_id is None:
            raise OrderRefused("the subscription has no exchange credentials")
        try:
            async with self._sessionmaker() as session:
                credential = await decrypt_for_execution(session, self._keyring, sub.credential_id)
        except NotFound as exc:  # deleted since the subscription was read
            raise OrderRefused("the subscription has no exchange credentials") from exc
        return await self._clients.for_credential(credential)

    async def _binance_fill(self, client: BinanceClient, order: dict[str, object]) -> Fill:
        if Decimal(str(order["executedQty"])) == 0:
            # A market order that found no liquidity expires with nothing executed.
            raise ExchangeError(f"order {order.get('status')} with nothing executed")
        fills = order.get("fills")
        if not isinstance(fills, list):
            fills = await client.order_trades(str(order["symbol"]), int(str(order["orderId"])))
        return Fill.from_binance(order, fills)

    async def _complete(self, trade: Trade, fence: int, fill: Fill) -> Trade:
        rules = await self._clients.rules(trade.symbol)
        async with session_scope(self._sessionmaker) as session:
            # Ownership first: a taker that found this order on the exchange records it.
            now = self._clock()
            if not await repository.fenced_update(
                session, trade.id, fence, lease_until=self._lease_end(now)
            ):
                raise AttemptLost()
            position = await self._position(session, trade)
            row = await self._record_fill(session, trade, fence, position, fill, rules)
        return self._resolved(row)

    async def _record_fill(
        self,
        session: AsyncSession,
        trade: Trade,
        fence: int,
        position: Position,
        fill: Fill,
        rules: SymbolRules,
    ) -> Trade:
        await repository.fenced_update(
            session, trade.id, fence, **_filled(position, trade, fill, rules)
        )
        row = await session.get(Trade, trade.id, populate_existing=True)
        assert row is not None
        self._audit(session, row, "order.filled")
        return row

    def _resolved(self, row: Trade) -> Trade:
        metrics.ORDERS.labels(row.mode, row.status).inc()
        log.info(f"order {row.status}", extra={**self._ids(row), "reason": row.reason})
        return row

    async def _finish(self, trade: Trade, fence: int, status: str, reason: str) -> Trade:
        async with session_scope(self._sessionmaker) as session:
            owned = await repository.fenced_update(
                session,
                trade.id,
                fence,
                status=status,
                reason=_with_reason(trade.reason, reason),
            )
            row = await session.get(Trade, trade.id, populate_existing=True)
            assert row is not None
            if owned:
                self._audit(session, row, f"order.{status}")
        if not owned:
            log.warning("order attempt taken over by another worker", extra=self._ids(row))
            return row
        return self._resolved(row)

    async def _unresolved(self, trade: Trade, fence: int, reason: str) -> None:
        """A temporary failure. Before anything was sent the attempt is released for the next
        try at once; after, its outcome is unknown and the lease taken at sending keeps every
        taker away until the exchange can no longer execute it."""
        async with session_scope(self._sessionmaker) as session:
            row = await session.get(Trade, trade.id)
            assert row is not None
            if row.sent_at is None:
                await repository.fenced_update(session, trade.id, fence, lease_until=self._clock())
                return
            if await repository.fenced_update(
                session,
                trade.id,
                fence,
                status="unknown",
                reason=_with_reason(row.reason, reason),
            ):
                await session.refresh(row)
                self._audit(session, row, "order.unknown")
        metrics.ORDERS.labels(trade.mode, "unknown").inc()
        log.warning("order outcome unknown", extra={**self._ids(trade), "reason": reason})

    async def _reload(self, trade: Trade) -> Trade:
        async with self._sessionmaker() as session:
            row = await session.get(Trade, trade.id)
        assert row is not None
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


def _stale(send_before: datetime | None) -> str:
    return f"stale: this decision's orders had to be sent before {send_before}; nothing was sent"


def _with_reason(reason: str | None, more: str) -> str:
    return f"{reason}; {more}" if reason else more


def _filled(position: Position, trade: Trade, fill: Fill, rules: SymbolRules) -> dict[str, Any]:
    """Apply the fill to the (locked) position; the trade's columns that record it."""
    return {
        "status": "filled",
        "realized_pnl": apply_fill(position, Side(trade.side), fill, rules),
        "quantity": fill.quantity,
        "price": fill.price,
        "quote_quantity": fill.quote_quantity,
        "fee": fill.fee,
        "fee_asset": fill.fee_asset,
        "exchange_order_id": fill.exchange_order_id,
    }
