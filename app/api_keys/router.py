from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app import audit
from app.api_keys import repository, service
from app.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from app.core.pagination import Page, PageDep, next_cursor
from app.deps import AdminDep, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, request: Request, _: AdminDep, session: SessionDep
) -> ApiKeyCreated:
    created = await service.create_api_key(session, body.name, body.scope, body.owner)
    audit.record(session, request, "api_key.create", "api_key", created.row.id)
    out = ApiKeyOut.model_validate(created.row)
    return ApiKeyCreated(**out.model_dump(), key=created.plaintext)


@router.get("", response_model=Page[ApiKeyOut])
async def list_api_keys(_: AdminDep, session: SessionDep, page: PageDep) -> Page[ApiKeyOut]:
    rows = await repository.page(session, page.after_id, page.limit + 1)
    return Page(
        items=[ApiKeyOut.model_validate(r) for r in rows[: page.limit]],
        next_cursor=next_cursor(rows, page.limit),
    )


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_api_key(
    key_id: str, request: Request, _: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    row = await service.revoke_api_key(session, key_id)
    audit.record(session, request, "api_key.revoke", "api_key", key_id)
    runtime.authenticator.revoked(session, row.key_digest)
    return Response(status_code=204)
