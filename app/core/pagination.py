"""Keyset pagination by id (ids sort by creation time): stable pages and an opaque cursor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated, Generic, Protocol, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from app.core.errors import Unprocessable

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    after_id: str | None


def _decode_cursor(cursor: str) -> str:
    try:
        after_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _bad_cursor() from exc
    if not after_id.isalnum() or len(after_id) > 64:
        raise _bad_cursor()
    return after_id


def _bad_cursor() -> Unprocessable:
    return Unprocessable(
        "cursor is not one this service issued",
        details=[{"loc": "query.cursor", "message": "invalid cursor"}],
    )


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> PageParams:
    return PageParams(limit=limit, after_id=_decode_cursor(cursor) if cursor else None)


PageDep = Annotated[PageParams, Depends(page_params)]


class HasId(Protocol):
    @property
    def id(self) -> str: ...


def next_cursor(rows: Sequence[HasId], limit: int) -> str | None:
    """Callers fetch limit + 1 rows; a row beyond the page means there is a next page."""
    if len(rows) <= limit:
        return None
    return base64.urlsafe_b64encode(rows[limit - 1].id.encode()).decode().rstrip("=")
