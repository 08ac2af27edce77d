"""`/api/v1/subscriptions`: a renter's subscriptions and their trades and decisions."""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Request

from app import audit
from app.core.errors import error_responses
from app.core.pagination import Page, PageDep, next_cursor
from app.deps import RenterDep, RenterReadDep, RuntimeDep, SessionDep
from app.subscriptions import repository, service
from app.subscriptions.schemas import (
    DecisionOut,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionUpdate,
    TradeOut,
    VoteOut,
)
from app.verification.service import candle_window

router = APIRouter(
    prefix="/api/v1/subscriptions", tags=["subscriptions"], responses=error_responses(403)
)


@router.post("", status_code=201, response_model=SubscriptionOut, responses=error_responses(404))
async def create_subscription(
    body: SubscriptionCreate,
    request: Request,
    renter: RenterDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> SubscriptionOut:
    sub = await service.create(session, renter, body, runtime.settings)
    audit.record(session, request, "subscription.create", "subscription", sub.id)
    # A new subscription trades on its first closed candle without waiting for beat.
    runtime.jobs.send_after_commit(session, "trading.dispatch")
    return SubscriptionOut.model_validate(sub)


@router.get("", response_model=Page[SubscriptionOut])
async def list_subscriptions(read: RenterReadDep, page: PageDep) -> Page[SubscriptionOut]:
    rows = await repository.page_of_renter(read.rows, read, page.after_id, page.limit + 1)
    subscriptions = [SubscriptionOut.model_validate(row) for row in rows]
    return Page(
        items=subscriptions[: page.limit], next_cursor=next_cursor(subscriptions, page.limit)
    )


@router.get("/{sub_id}", response_model=SubscriptionOut, responses=error_responses(404))
async def get_subscription(sub_id: str, read: RenterReadDep) -> SubscriptionOut:
    shown = await service.owned_view(read.rows, read, sub_id)
    return SubscriptionOut.model_validate(shown)


@router.patch("/{sub_id}", response_model=SubscriptionOut, responses=error_responses(404))
async def update_subscription(
    sub_id: str,
    body: SubscriptionUpdate,
    request: Request,
    renter: RenterDep,
    session: SessionDep,
) -> SubscriptionOut:
    sub = await service.update(session, renter, sub_id, body)
    audit.record(session, request, "subscription.update", "subscription", sub.id)
    return SubscriptionOut.model_validate(sub)


@router.get("/{sub_id}/trades", response_model=Page[TradeOut], responses=error_responses(404))
async def list_trades(sub_id: str, read: RenterReadDep, page: PageDep) -> Page[TradeOut]:
    async with read.sessions() as session:
        sub = await service.get_owned(session, read, sub_id)
        rows = await repository.trades_page(session, sub.id, page.after_id, page.limit + 1)
    return Page(
        items=[TradeOut.model_validate(r) for r in rows[: page.limit]],
        next_cursor=next_cursor(rows, page.limit),
    )


@router.get("/{sub_id}/decisions", response_model=Page[DecisionOut], responses=error_responses(404))
async def list_decisions(sub_id: str, read: RenterReadDep, page: PageDep) -> Page[DecisionOut]:
    async with read.sessions() as session:
        sub = await service.get_owned(session, read, sub_id)
        rows = await repository.decisions_page(session, sub, page.after_id, page.limit + 1)
        shown = rows[: page.limit]
        voted = await repository.votes_of(session, [d.id for d in shown])
    votes: dict[str, list[VoteOut]] = defaultdict(list)
    for vote in voted:
        votes[vote.decision_id].append(VoteOut.model_validate(vote))
    items = [
        DecisionOut(
            id=d.id,
            symbol=d.symbol,
            timeframe=d.timeframe,
            candle_open_at=d.candle_open_at,
            action=d.action,
            indicator_score=d.indicator_score,
            combined_score=d.combined_score,
            indicators=d.indicators,
            rule_version=d.rule_version,
            rule_params=d.rule_params,
            fallback_reason=d.fallback_reason,
            decided_at=d.created_at,
            candles=candle_window(d),
            votes=votes[d.id],
        )
        for d in shown
    ]
    return Page(items=items, next_cursor=next_cursor(rows, page.limit))
