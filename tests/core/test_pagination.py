"""Cursors: every cursor the service issues reads back; anything else is a clean 422."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import Unprocessable
from app.core.pagination import decode_cursor, encode_cursor

ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@given(ids)
def test_issued_cursors_round_trip(row_id: str) -> None:
    assert decode_cursor(encode_cursor(row_id)) == row_id


@given(st.text(max_size=80))
def test_garbage_is_refused_or_is_an_issued_cursor(cursor: str) -> None:
    # Only Unprocessable may escape: anything else would be a 500.
    try:
        row_id = decode_cursor(cursor)
    except Unprocessable:
        return
    assert encode_cursor(row_id) == cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "é",  # not ASCII: base64 raised ValueError, a 500
        "w6nDqcOp",  # base64 of "ééé": Unicode letters passed isalnum()
        "MTIz",  # "123": not an id this service makes
        "!!",
        "YWJj=",  # padding we never send
    ],
)
def test_cursors_the_service_never_issued_are_refused(cursor: str) -> None:
    with pytest.raises(Unprocessable):
        decode_cursor(cursor)
