"""`/api/v1/api-keys`: the admin's key management routes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app import audit
from app.api_keys import repository, service
from app.api_keys.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyUpdate,
    AssertionKeyIn,
    AssertionKeyOut,
)
from app.core.errors import error_responses
from app.core.pagination import Page, PageDep, next_cursor
from app.deps import AdminDep, ReadSessionsDep, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"], responses=error_responses(403))


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, request: Request, _: AdminDep, session: SessionDep
) -> ApiKeyCreated:
    created = await service.create_api_key(
        session,
        body.name,
        body.scope,
        body.owner,
        [(k.algorithm, k.raw()) for k in body.assertion_keys],
        body.assertion_mode,
        rate_limit_per_minute=body.rate_limit_per_minute,
    )
    audit.record(session, request, "api_key.create", "api_key", created.row.id)
    out = ApiKeyOut.of(created.row, created.assertion_keys)
    return ApiKeyCreated(**out.model_dump(), key=created.plaintext)


@router.get("", response_model=Page[ApiKeyOut])
async def list_api_keys(_: AdminDep, sessions: ReadSessionsDep, page: PageDep) -> Page[ApiKeyOut]:
    async with sessions() as session:
        rows = await repository.page(session, page.after_id, page.limit + 1)
        shown = rows[: page.limit]
        keys = await repository.assertion_keys(session, [r.id for r in shown])
    return Page(
        items=[ApiKeyOut.of(r, keys.get(r.id, [])) for r in shown],
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
    """Change the assertion mode: `optional` while the canister starts signing, then
    `required`."""
    row, keys = await service.set_assertion_mode(session, key_id, body.assertion_mode)
    audit.record(session, request, "api_key.assertion_mode", "api_key", key_id)
    runtime.authenticator.changed(session, row.key_digest)
    return ApiKeyOut.of(row, keys)


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
    """Rotation, step one: add the new public key; both verify until the old one is removed."""
    row, added = await service.add_assertion_key(session, key_id, body.algorithm, body.raw())
    audit.record(session, request, "api_key.assertion_key.add", "api_key", key_id)
    runtime.authenticator.changed(session, row.key_digest)
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
    row = await service.remove_assertion_key(session, key_id, assertion_id)
    audit.record(session, request, "api_key.assertion_key.remove", "api_key", key_id)
    runtime.authenticator.changed(session, row.key_digest)
    return Response(status_code=204)


@router.delete(
    "/{key_id}", status_code=204, response_class=Response, responses=error_responses(404)
)
async def revoke_api_key(
    key_id: str, request: Request, _: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    row = await service.revoke_api_key(session, key_id)
    audit.record(session, request, "api_key.revoke", "api_key", key_id)
    runtime.authenticator.changed(session, row.key_digest)
    return Response(status_code=204)
