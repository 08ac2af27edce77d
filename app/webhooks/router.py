"""Webhook endpoints: register a URL for the events the key may read in the feed, manage it,
see every delivery attempt, replay. Each key manages its own (a developer's, every key of
that developer); admin manages all. Another key's endpoint is a 404, like a missing one."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from app import audit
from app.api_keys.authenticator import Caller
from app.api_keys.schemas import Scope
from app.core.db import utcnow
from app.core.errors import error_responses
from app.core.pagination import Page, PageDep, next_cursor
from app.deps import ReadSessionsDep, RuntimeDep, SessionDep, require_scope
from app.events import feed
from app.webhooks import repository, service
from app.webhooks.flows import DELIVER_TASK, delivery_jobs
from app.webhooks.schemas import (
    DeliveryOut,
    ReplayIn,
    ReplayOut,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
    WebhookWithSecret,
)
from app.webhooks.targets import TargetPolicy

router = APIRouter(
    prefix="/api/v1/webhooks", tags=["webhooks"], responses=error_responses(403, 404)
)
OwnerDep = Annotated[Caller, Depends(require_scope(Scope.marketplace, Scope.developer))]


@router.post("", status_code=201, response_model=WebhookWithSecret)
async def create_webhook(
    body: WebhookCreate,
    request: Request,
    caller: OwnerDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> WebhookWithSecret:
    """Register an endpoint; the response holds its signing secret, shown this once."""
    endpoint, secret = await service.create(
        session, runtime.keyring, TargetPolicy.of(runtime.settings), caller, body
    )
    audit.record(session, request, "webhook.create", "webhook", endpoint.id)
    return WebhookWithSecret.of_new(endpoint, secret)


@router.get("", response_model=Page[WebhookOut])
async def list_webhooks(
    caller: OwnerDep, sessions: ReadSessionsDep, page: PageDep
) -> Page[WebhookOut]:
    async with sessions() as session:
        rows = await repository.page_owned(
            session, service.owner_of(caller), page.after_id, page.limit + 1
        )
    return Page(
        items=[WebhookOut.of(row) for row in rows[: page.limit]],
        next_cursor=next_cursor(rows, page.limit),
    )


@router.get("/{webhook_id}", response_model=WebhookOut)
async def get_webhook(webhook_id: str, caller: OwnerDep, sessions: ReadSessionsDep) -> WebhookOut:
    async with sessions() as session:
        return WebhookOut.of(await service.get(session, caller, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut)
async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    request: Request,
    caller: OwnerDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> WebhookOut:
    endpoint = await service.update(
        session, TargetPolicy.of(runtime.settings), caller, webhook_id, body
    )
    audit.record(session, request, "webhook.update", "webhook", endpoint.id)
    return WebhookOut.of(endpoint)


@router.delete("/{webhook_id}", status_code=204, response_class=Response)
async def delete_webhook(
    webhook_id: str, request: Request, caller: OwnerDep, session: SessionDep
) -> Response:
    """Delete the endpoint with its deliveries and their attempts."""
    await session.delete(await service.get(session, caller, webhook_id))
    audit.record(session, request, "webhook.delete", "webhook", webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookWithSecret)
async def rotate_secret(
    webhook_id: str, request: Request, caller: OwnerDep, session: SessionDep, runtime: RuntimeDep
) -> WebhookWithSecret:
    """A new signing secret, shown this once. Until the old one expires
    (WEBHOOK_SECRET_OVERLAP_HOURS, 24 by default) deliveries carry a signature by each."""
    overlap = timedelta(hours=runtime.settings.webhook_secret_overlap_hours)
    endpoint, secret = await service.rotate_secret(
        session, runtime.keyring, caller, webhook_id, utcnow(), overlap
    )
    audit.record(session, request, "webhook.rotate_secret", "webhook", endpoint.id)
    return WebhookWithSecret.of_new(endpoint, secret)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    webhook_id: str, caller: OwnerDep, sessions: ReadSessionsDep, page: PageDep
) -> Page[DeliveryOut]:
    """The endpoint's deliveries, oldest first, each with every attempt and its next retry."""
    async with sessions() as session:
        rows, attempts = await service.delivery_page(
            session, caller, webhook_id, page.after_id, page.limit + 1
        )
    return Page(
        items=[DeliveryOut.of(row, attempts[row.id]) for row in rows[: page.limit]],
        next_cursor=next_cursor(rows, page.limit),
    )


@router.post(
    "/{webhook_id}/replay",
    status_code=202,
    response_model=ReplayOut,
    responses=error_responses(422),
)
async def replay(
    webhook_id: str,
    body: ReplayIn,
    request: Request,
    caller: OwnerDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ReplayOut:
    """Send again every event after the feed cursor `after` that the endpoint matches, as new
    deliveries (with the events' own `webhook-id`s), whether delivered before or not."""
    after_seq = feed.decode_seq(body.after, loc="body.after")
    owed, reached = await service.replay(session, caller, webhook_id, after_seq, utcnow())
    audit.record(session, request, "webhook.replay", "webhook", webhook_id)
    for kwargs in delivery_jobs(owed, runtime.settings.webhook_batch_size):
        runtime.jobs.send_after_commit(session, DELIVER_TASK, **kwargs)
    return ReplayOut(deliveries=len(owed), next_cursor=feed.encode_seq(reached))
