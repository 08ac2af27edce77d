"""`/api/v1/marketplaces`: the admin's list of marketplaces, and making one outside
development (where a key or listing naming an unknown marketplace makes it)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app import audit
from app.core.errors import error_responses
from app.core.pagination import Page, PageDep, next_cursor
from app.deps import AdminDep, ReadSessionsDep, SessionDep
from app.marketplaces import repository, service
from app.marketplaces.schemas import MarketplaceCreate, MarketplaceOut

router = APIRouter(
    prefix="/api/v1/marketplaces", tags=["marketplaces"], responses=error_responses(403)
)


@router.post("", status_code=201, response_model=MarketplaceOut, responses=error_responses(409))
async def create_marketplace(
    body: MarketplaceCreate, request: Request, _: AdminDep, session: SessionDep
) -> MarketplaceOut:
    marketplace, keys = await service.create(
        session,
        body.name,
        [(k.algorithm, k.raw()) for k in body.assertion_keys],
        body.assertion_mode,
    )
    audit.record(session, request, "marketplace.create", "marketplace", marketplace.id)
    return MarketplaceOut.of(marketplace, keys)


@router.get("", response_model=Page[MarketplaceOut])
async def list_marketplaces(
    _: AdminDep, sessions: ReadSessionsDep, page: PageDep
) -> Page[MarketplaceOut]:
    async with sessions() as session:
        rows = await repository.page(session, page.after_id, page.limit + 1)
        shown = rows[: page.limit]
        keys = await repository.assertion_keys(session, [r.id for r in shown])
    return Page(
        items=[MarketplaceOut.of(r, keys.get(r.id, [])) for r in shown],
        next_cursor=next_cursor(rows, page.limit),
    )
