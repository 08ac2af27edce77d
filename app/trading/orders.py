"""The fenced path of an order attempt: claim, commit to send, send, resolve, resume.

An attempt is committed `pending` before anything is sent. Ownership is a lease with a
fencing token (`fence`). The owner proves it still owns the attempt with one conditional
UPDATE immediately before sending (after the request's exchange weight is granted, so that no
wait sits between the check and the request) and again when it records the outcome. Whoever
takes over an attempt whose lease ran out asks the exchange by client order id before it
sends anything; the lease outlasts Binance's receive window, so an order the taker does not
find can no longer appear.

An order for a decision is sent only while the decision is fresh (`send_before`); a stale
one is recorded as refused, never sent. Testnet and live orders always go this way; a paper
attempt only when it exists already, and is then filled by app/trading/paper.py.
"""

from __future__ import annotations

import contextlib
import logging
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from app.core.crypto import Keyring, KeyringError
from app.core.db import session_scope
from app.core.errors import NotFound
from app.credentials.service import (
    DecryptedCredential,
    credentials_invalid,
    decrypt_for_execution,
)
from app.integrations.binance.client import BinanceClient
from app.integrations.binance.errors import AuthError, ExchangeError, TemporaryError
from app.integrations.binance.filters import SymbolRules
from app.models import Subscription, Trade
from app.trading import events, metrics, repository
from app.trading.attempts import (
    FINAL_STATUSES,
    AttemptInFlight,
    AttemptLost,
    Attempts,
    OrderIntent,
    OrderRefused,
    audit,
    ids,
    resolved,
    settled,
    with_reason,
)
from app.trading.fills import Fill, Side
from app.trading.paper import PaperFills

log = logging.getLogger(__name__)


class FencedOrders:
    """Attempts seen through under a lease and fencing token, at the exchange or not."""

    def __init__(self, attempts: Attempts, paper: PaperFills, keyring: Keyring) -> None:
        self._attempts = attempts
        self._paper = paper
        self._keyring = keyring

    async def place(self, sub: Subscription, intent: OrderIntent, price: Decimal | None) -> Trade:
        """Claim the intent's attempt and see it through, or the attempt as it stands."""
        trade, fence, keys = await self._claim(sub, intent, read_keys=sub.mode != "paper")
        if fence is not None:
            return await self._attempt(trade, fence, price, sub, keys)
        if trade.status not in FINAL_STATUSES:
            raise AttemptInFlight(f"order {trade.client_order_id} is being placed elsewhere")
        return trade

    async def refuse(self, sub: Subscription, intent: OrderIntent, reason: str) -> Trade:
        trade, fence, _ = await self._claim(sub, intent)
        if fence is None:
            return trade
        return await self._finish(trade, fence, "refused", reason)

    async def resume(self, trade_id: str) -> Trade | None:
        now = self._attempts.clock()
        async with session_scope(self._attempts.sessionmaker) as session:
            fence = await repository.take_over(
                session, trade_id, now, self._attempts.lease_end(now)
            )
            if fence is None:
                return None
            trade = await session.get(Trade, trade_id)
            assert trade is not None
            audit(session, trade, "order.reconcile")
        return await self._attempt(trade, fence)

    async def _claim(
        self, sub: Subscription, intent: OrderIntent, read_keys: bool = False
    ) -> tuple[Trade, int | None, DecryptedCredential | None]:
        """The attempt, our fence when this call owns it and, given `read_keys`, the
        subscription's credentials read in the same transaction (a session and its round
        trips fewer per exchange order): None when not read, or when there are none to read
        (the sending reads them again, and refuses or fails as it always has)."""
        trade = self._attempts.new(sub, intent)
        keys = None
        try:
            async with session_scope(self._attempts.sessionmaker) as session:
                session.add(trade)
                audit(session, trade, "order.attempt")
                if intent.exit:
                    await events.exit_triggered(session, sub, trade, intent.exit)
                if read_keys and sub.credential_id is not None:
                    with contextlib.suppress(NotFound, KeyringError):
                        keys = await decrypt_for_execution(
                            session, self._keyring, sub.credential_id
                        )
        except IntegrityError as exc:
            # Its unique client order id is taken: the attempt exists (on MySQL, a racing
            # one's insert is waited for until it commits).
            return *await self._existing(trade.client_order_id, exc), None
        return trade, trade.fence, keys

    async def _existing(self, order_id: str, error: IntegrityError) -> tuple[Trade, int | None]:
        """An existing attempt, and our fence when its owner's lease had run out."""
        now = self._attempts.clock()
        async with session_scope(self._attempts.sessionmaker) as session:
            existing = await repository.trade_by_client_order_id(session, order_id)
            if existing is None:
                raise error  # another constraint failed, not the attempt's uniqueness
            if existing.status in FINAL_STATUSES:
                return existing, None
            fence = await repository.take_over(
                session, existing.id, now, self._attempts.lease_end(now)
            )
            if fence is not None:
                # Read again: the previous owner may have sent the order since our first read.
                await session.refresh(existing)
                audit(session, existing, "order.reconcile")
            return existing, fence

    async def _attempt(
        self,
        trade: Trade,
        fence: int,
        price: Decimal | None = None,
        sub: Subscription | None = None,
        keys: DecryptedCredential | None = None,
    ) -> Trade:
        """`sub`: the attempt's subscription, when the caller has it; `keys`: its
        credentials, when the caller has read them."""
        try:
            if trade.mode == "paper":
                return await self._paper.fill_fenced(trade, fence, price)
            return await self._on_exchange(trade, fence, price, sub, keys)
        except AttemptLost:
            log.warning("order attempt taken over by another worker", extra=ids(trade))
            return await self._reload(trade)
        except OrderRefused as exc:
            return await self._finish(trade, fence, "refused", str(exc))
        except TemporaryError as exc:
            await self._unresolved(trade, fence, str(exc))
            raise
        except AuthError as exc:
            # The key is bad for every order: its subscriptions stop until the renter
            # stores a good one, rather than fail at each decision.
            return await self._finish(trade, fence, "rejected", str(exc), bad_credentials=True)
        except ExchangeError as exc:
            return await self._finish(trade, fence, "rejected", str(exc))

    async def _on_exchange(
        self,
        trade: Trade,
        fence: int,
        price: Decimal | None,
        sub: Subscription | None,
        keys: DecryptedCredential | None,
    ) -> Trade:
        rules = await self._attempts.clients.rules(trade.symbol)
        sub = sub or await self._attempts.subscription(trade.subscription_id)
        client = await self._client_for(sub, keys)
        if trade.fence > 1:
            # Taken over: whatever the last owner did, the exchange knows whether it happened.
            found = await client.find_order(trade.symbol, trade.client_order_id)
            if found is not None:
                log.info("reconciled an order the exchange had", extra=ids(trade))
                return await self._complete(trade, fence, await _binance_fill(client, found), sub)
        quote_price = price if price is not None else await client.price(trade.symbol)

        async def size() -> Decimal:
            return await self._commit_sized(trade, fence, rules, quote_price)

        order = await client.market_order(trade.symbol, trade.side, trade.client_order_id, size)
        return await self._complete(trade, fence, await _binance_fill(client, order), sub)

    async def _commit_sized(
        self, trade: Trade, fence: int, rules: SymbolRules, price: Decimal
    ) -> Decimal:
        """Size the order and commit to sending it: called once its request weight is granted."""
        attempts = self._attempts
        async with session_scope(attempts.sessionmaker) as session:
            if trade.side == Side.BUY:
                # It spends the renter's own quote, which the exchange checks: no position
                # of ours to lock, and marked sent with what it asks for in one write.
                quantity = attempts.size(trade, None, Decimal(0), rules, price)
                await attempts.commit_to_send(session, trade, fence, requested_quantity=quantity)
            else:
                await attempts.commit_to_send(session, trade, fence)
                position = await attempts.position(session, trade)
                reserve = await attempts.reserved(session, trade)
                quantity = attempts.size(trade, position, reserve, rules, price)
                await repository.fenced_update(
                    session, trade.id, fence, requested_quantity=quantity
                )
        return quantity

    async def _client_for(
        self, sub: Subscription, keys: DecryptedCredential | None
    ) -> BinanceClient:
        """`keys`: the subscription's credentials, if read already."""
        if sub.credential_id is None:
            raise OrderRefused("the subscription has no exchange credentials")
        if keys is None:
            try:
                async with self._attempts.sessionmaker() as session:
                    keys = await decrypt_for_execution(session, self._keyring, sub.credential_id)
            except NotFound as exc:  # deleted since the subscription was read
                raise OrderRefused("the subscription has no exchange credentials") from exc
        return await self._attempts.clients.for_credential(keys)

    async def _complete(self, trade: Trade, fence: int, fill: Fill, sub: Subscription) -> Trade:
        """`sub`: the attempt's subscription, as read for its order: its outcome's events
        address the renter without reading it again."""
        attempts = self._attempts
        rules = await attempts.clients.rules(trade.symbol)
        async with session_scope(attempts.sessionmaker) as session:
            # Ownership first: a taker that found this order on the exchange records it.
            now = attempts.clock()
            if not await repository.fenced_update(
                session, trade.id, fence, lease_until=attempts.lease_end(now)
            ):
                raise AttemptLost()
            position = await attempts.position(session, trade)
            row = await attempts.record_fill(session, trade, fence, position, fill, rules, sub)
        return resolved(row)

    async def _finish(
        self, trade: Trade, fence: int, status: str, reason: str, bad_credentials: bool = False
    ) -> Trade:
        """`bad_credentials`: the exchange refused the subscription's key (`reason`)."""
        async with session_scope(self._attempts.sessionmaker) as session:
            owned = await repository.fenced_update(
                session,
                trade.id,
                fence,
                status=status,
                reason=with_reason(trade.reason, reason),
            )
            row = await session.get(Trade, trade.id, populate_existing=True)
            assert row is not None
            if owned:
                await settled(session, row)
                if bad_credentials:
                    await credentials_invalid(session, row.subscription_id, reason)
        if not owned:
            log.warning("order attempt taken over by another worker", extra=ids(row))
            return row
        return resolved(row)

    async def _unresolved(self, trade: Trade, fence: int, reason: str) -> None:
        """A temporary failure. Before anything was sent the attempt is released for the next
        try at once; after, its outcome is unknown and the lease taken at sending keeps every
        taker away until the exchange can no longer execute it."""
        async with session_scope(self._attempts.sessionmaker) as session:
            row = await session.get(Trade, trade.id)
            assert row is not None
            if row.sent_at is None:
                await repository.fenced_update(
                    session, trade.id, fence, lease_until=self._attempts.clock()
                )
                return
            if await repository.fenced_update(
                session,
                trade.id,
                fence,
                status="unknown",
                reason=with_reason(row.reason, reason),
            ):
                await session.refresh(row)
                audit(session, row, "order.unknown")
        metrics.ORDERS.labels(trade.mode, "unknown").inc()
        log.warning("order outcome unknown", extra={**ids(trade), "reason": reason})

    async def _reload(self, trade: Trade) -> Trade:
        async with self._attempts.sessionmaker() as session:
            row = await session.get(Trade, trade.id)
        assert row is not None
        return row


async def _binance_fill(client: BinanceClient, order: dict[str, object]) -> Fill:
    if Decimal(str(order["executedQty"])) == 0:
        # A market order that found no liquidity expires with nothing executed.
        raise ExchangeError(f"order {order.get('status')} with nothing executed")
    fills = order.get("fills")
    if not isinstance(fills, list):
        fills = await client.order_trades(str(order["symbol"]), int(str(order["orderId"])))
    return Fill.from_binance(order, fills)
