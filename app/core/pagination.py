"""Keyset pagination by id (ids sort by creation time): stable pages and an opaque cursor."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Annotated, Generic, Protocol, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from app.core.errors import Unprocessable

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="the `cursor` of the next page; null on the last page",
        examples=["MDE5M2I2YzhhMWYyN2MzZTlkNGI1YTZmN2U4ZDljMGI"],
    )


class PageParams(BaseModel):
    limit: int
    after_id: str | None


# Row ids are what new_id() makes: 32 lower-case hex characters.
_ROW_ID = re.compile(r"[0-9a-f]{32}")


def encode_cursor(row_id: str) -> str:
    return base64.urlsafe_b64encode(row_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, loc: str = "query.cursor") -> str:
    """The row id behind a cursor this service issued; anything else is a 422 naming the
    parameter `loc`, never a 500."""
    # base64 ignores characters outside its alphabet and refuses non-ASCII with ValueError:
    # only the one spelling encode_cursor makes is accepted.
    try:
        after_id = base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("ascii")
    except (UnicodeError, binascii.Error) as exc:
        raise bad_cursor(loc) from exc
    if not _ROW_ID.fullmatch(after_id) or encode_cursor(after_id) != cursor:
        raise bad_cursor(loc)
    return after_id


def bad_cursor(loc: str) -> Unprocessable:
    return Unprocessable(
        "cursor is not one this service issued",
        details=[{"loc": loc, "message": "invalid cursor"}],
    )


async def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> PageParams:
    return PageParams(limit=limit, after_id=decode_cursor(cursor) if cursor else None)


PageDep = Annotated[PageParams, Depends(page_params)]


class HasId(Protocol):
    @property
    def id(self) -> str: ...


def next_cursor(rows: Sequence[HasId], limit: int) -> str | None:
    """Callers fetch limit + 1 rows; a row beyond the page means there is a next page."""
    if len(rows) <= limit:
        return None
    return encode_cursor(rows[limit - 1].id)
