"""`/api/v1/api-keys`: the admin's key management routes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app import audit
from app.api_keys import flows, repository, service
from app.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ApiKeyUpdate
from app.core.errors import error_responses
from app.core.pagination import Page, PageDep, next_cursor
from app.deps import AdminDep, ReadSessionsDep, RuntimeDep, SessionDep
from app.marketplaces import repository as marketplaces_repository
from app.marketplaces import service as marketplaces
from app.marketplaces.schemas import AssertionKeyIn, AssertionKeyOut

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"], responses=error_responses(403))


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, request: Request, _: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> ApiKeyCreated:
    """A marketplace key joins its marketplace: assertion keys or a mode given here change the
    marketplace, so its other keys follow at once."""
    created = await flows.create(session, request, runtime, body)
    out = ApiKeyOut.of(created.row, created.marketplace, created.assertion_keys)
    return ApiKeyCreated(**out.model_dump(), key=created.plaintext)


@router.get("", response_model=Page[ApiKeyOut])
async def list_api_keys(_: AdminDep, sessions: ReadSessionsDep, page: PageDep) -> Page[ApiKeyOut]:
    async with sessions() as session:
        rows = await repository.page(session, page.after_id, page.limit + 1)
        shown = rows[: page.limit]
        ids = {r.marketplace_id for r in shown if r.marketplace_id is not None}
        homes = await marketplaces_repository.by_ids(session, ids)
        keys = await marketplaces_repository.assertion_keys(session, ids)
    return Page(
        items=[
            ApiKeyOut.of(
                r,
                homes.get(r.marketplace_id or ""),
                keys.get(r.marketplace_id or "", []),
            )
            for r in shown
        ],
        next_cursor=next_cursor(rows, page.limit),
    )


@router.patch("/{key_id}", response_model=ApiKeyOut, responses=error_responses(404))
async def update_api_key(
    key_id: str,
    body: ApiKeyUpdate,
    request: Request,
    _: AdminDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ApiKeyOut:
    """Change the assertion mode of the key's marketplace: `optional` while the canister
    starts signing, then `required`."""
    marketplace = await service.marketplace_of_key(session, key_id)
    keys = await marketplaces.set_assertion_mode(session, marketplace, body.assertion_mode)
    audit.record(session, request, "api_key.assertion_mode", "api_key", key_id)
    runtime.authenticator.marketplace_changed(session, marketplace.id)
    row = await repository.get(session, key_id)
    assert row is not None, "read above in this transaction"
    return ApiKeyOut.of(row, marketplace, keys)


@router.post(
    "/{key_id}/assertion-keys",
    status_code=201,
    response_model=AssertionKeyOut,
    responses=error_responses(404),
)
async def add_assertion_key(
    key_id: str,
    body: AssertionKeyIn,
    request: Request,
    _: AdminDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> AssertionKeyOut:
    """Rotation, step one: add the new public key to the key's marketplace; both verify until
    the old one is removed."""
    marketplace = await service.marketplace_of_key(session, key_id)
    added = await marketplaces.add_assertion_key(
        session, marketplace.id, body.algorithm, body.raw()
    )
    audit.record(session, request, "api_key.assertion_key.add", "api_key", key_id)
    runtime.authenticator.marketplace_changed(session, marketplace.id)
    return AssertionKeyOut.of(added)


@router.delete(
    "/{key_id}/assertion-keys/{assertion_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def remove_assertion_key(
    key_id: str,
    assertion_id: str,
    request: Request,
    _: AdminDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Rotation, step two: remove the old public key once the canister signs with the new."""
    marketplace = await service.marketplace_of_key(session, key_id)
    await marketplaces.remove_assertion_key(session, marketplace, assertion_id)
    audit.record(session, request, "api_key.assertion_key.remove", "api_key", key_id)
    runtime.authenticator.marketplace_changed(session, marketplace.id)
    return Response(status_code=204)


@router.delete(
    "/{key_id}", status_code=204, response_class=Response, responses=error_responses(404)
)
async def revoke_api_key(
    key_id: str, request: Request, _: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    await flows.revoke(session, request, runtime, key_id)
    return Response(status_code=204)
