"""Properties of the parsers that stand between the outside world and the database.

Principals, cursors and decimals arrive from the marketplace in headers, query strings and
bodies: whatever the text, the answer is the value or a validation error, never anything else.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Union, get_args, get_origin

import annotated_types
import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from app.bots.schemas import BotCreate, BotUpdate
from app.core.errors import AppError
from app.core.pagination import decode_cursor, encode_cursor
from app.core.principals import (
    MAX_PRINCIPAL_BYTES,
    InvalidPrincipal,
    encode_principal,
    parse_principal,
)
from app.subscriptions.schemas import SubscriptionCreate, SubscriptionUpdate

principal_bytes = st.binary(max_size=MAX_PRINCIPAL_BYTES)
BASE32_AND_DASH = "abcdefghijklmnopqrstuvwxyz234567-"
# Characters a mutation puts in: the principal alphabet itself, and anything at all.
replacement_chars = st.one_of(st.sampled_from(BASE32_AND_DASH), st.characters())


@given(principal_bytes)
def test_a_principal_round_trips_through_format_and_parse(raw: bytes) -> None:
    text = encode_principal(raw)
    assert parse_principal(text) == raw
    assert encode_principal(parse_principal(text)) == text


@given(principal_bytes, st.data())
def test_every_one_character_mutation_of_a_principal_is_rejected(
    raw: bytes, data: st.DataObject
) -> None:
    text = encode_principal(raw)
    position = data.draw(st.integers(0, len(text) - 1), label="position")
    kind = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="kind")
    if kind == "delete":
        mutated = text[:position] + text[position + 1 :]
    else:
        char = data.draw(replacement_chars.filter(lambda c: c != text[position]), label="char")
        keep = position if kind == "insert" else position + 1
        mutated = text[:position] + char + text[keep:]
    with pytest.raises(InvalidPrincipal):
        parse_principal(mutated)


row_ids = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)


@given(row_ids)
def test_a_cursor_round_trips(row_id: str) -> None:
    assert decode_cursor(encode_cursor(row_id)) == row_id


def _decodes_to_what_was_encoded_or_is_a_422(cursor: str) -> None:
    try:
        row_id = decode_cursor(cursor)
    except AppError as exc:
        assert (exc.status_code, exc.code) == (422, "VALIDATION_ERROR")
        assert exc.details == [{"loc": "query.cursor", "message": "invalid cursor"}]
        return
    assert encode_cursor(row_id) == cursor


@given(st.text())
def test_any_text_as_a_cursor_is_a_row_id_or_a_422(cursor: str) -> None:
    _decodes_to_what_was_encoded_or_is_a_422(cursor)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/"))
def test_base64_like_text_as_a_cursor_is_a_row_id_or_a_422(cursor: str) -> None:
    _decodes_to_what_was_encoded_or_is_a_422(cursor)


@given(row_ids, st.data())
def test_a_mutated_cursor_is_a_row_id_or_a_422(row_id: str, data: st.DataObject) -> None:
    cursor = encode_cursor(row_id)
    position = data.draw(st.integers(0, len(cursor) - 1))
    char = data.draw(st.characters())
    _decodes_to_what_was_encoded_or_is_a_422(cursor[:position] + char + cursor[position + 1 :])


# Decimals: every decimal field of every request body, with the bounds its model declares.

REQUEST_BODIES = (BotCreate, BotUpdate, SubscriptionCreate, SubscriptionUpdate)
# Other fields a model needs before the one under test can be judged alone.
REQUIRED_OTHERS: dict[str, dict[str, Any]] = {
    "Voter": {"provider": "openai", "model": "gpt-4o-mini"},
    "ModelPrice": {"input": "0", "output": "0"},
    "SubscriptionCreate": {
        "bot_id": "b",
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "mode": "paper",
        "quote_amount": "1",
    },
}


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)


def _is_decimal(annotation: Any) -> bool:
    if annotation is Decimal:
        return True
    if get_origin(annotation) in (Union, types.UnionType) or hasattr(annotation, "__metadata__"):
        return any(_is_decimal(arg) for arg in get_args(annotation))
    return False


def _bounds_in(annotation: Any) -> Iterator[Any]:
    """The bounds a type carries itself (`PositiveQuote | None`): a Field() holds them in its
    metadata."""
    for item in getattr(annotation, "__metadata__", ()):
        yield from getattr(item, "metadata", [item])
    for arg in get_args(annotation):
        yield from _bounds_in(arg)


def _decimal_fields() -> Iterator[tuple[type[BaseModel], str, list[Any]]]:
    seen: set[type[BaseModel]] = set()
    todo = list(REQUEST_BODIES)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            todo += _models_in(field.annotation)
            if _is_decimal(field.annotation):
                yield model, name, [*field.metadata, *_bounds_in(field.annotation)]


class Bounds:
    def __init__(self, model: type[BaseModel], name: str, metadata: list[Any]) -> None:
        self.model, self.name = model, name
        self.low: Decimal | None = None
        self.low_inclusive = True
        self.high: Decimal | None = None
        self.places: int | None = None
        for item in metadata:
            if isinstance(item, annotated_types.Gt):
                self.low, self.low_inclusive = Decimal(str(item.gt)), False
            elif isinstance(item, annotated_types.Ge):
                self.low = Decimal(str(item.ge))
            elif isinstance(item, annotated_types.Le):
                self.high = Decimal(str(item.le))
            elif getattr(item, "decimal_places", None) is not None:
                self.places = item.decimal_places

    def __repr__(self) -> str:
        return f"{self.model.__name__}.{self.name}"

    def admits(self, value: Decimal) -> bool:
        assert self.low is not None and self.high is not None and self.places is not None
        above_low = self.low <= value if self.low_inclusive else self.low < value
        # Trailing zeros are no places: "1.50000" has one.
        _, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        places = 0 if value.is_zero() else -(exponent + trailing_zeros)
        return above_low and value <= self.high and places <= self.places

    def pattern(self) -> str:
        """The pattern the document gives this field's string form."""
        documented = self.model.model_json_schema()["properties"][self.name]
        (string,) = [b for b in documented["anyOf"] if b["type"] == "string"]
        return str(string["pattern"])

    def parse(self, value: str) -> BaseModel:
        body = {**REQUIRED_OTHERS.get(self.model.__name__, {}), self.name: value}
        return self.model.model_validate_json(json.dumps(body))


DECIMAL_FIELDS = [Bounds(*found) for found in _decimal_fields()]


def test_every_decimal_a_body_gives_is_bounded() -> None:
    assert len(DECIMAL_FIELDS) >= 15, DECIMAL_FIELDS
    for bounds in DECIMAL_FIELDS:
        assert bounds.low is not None and bounds.high is not None, bounds
        assert bounds.places is not None, bounds


@pytest.mark.parametrize("bounds", DECIMAL_FIELDS, ids=repr)
@given(data=st.data())
def test_an_accepted_decimal_is_normalised_and_within_bounds(
    bounds: Bounds, data: st.DataObject
) -> None:
    value = data.draw(
        st.decimals(min_value=bounds.low, max_value=bounds.high, places=bounds.places).filter(
            lambda v: bounds.low_inclusive or v != bounds.low
        )
    )
    # The same amount spelt three ways: plain, with trailing zeros, in exponent notation.
    spellings = [str(value), f"{value:.{bounds.places + 2}f}", f"{value:E}"]
    echoed = set()
    for spelling in spellings:
        parsed = getattr(bounds.parse(spelling), bounds.name)
        assert parsed == value
        assert bounds.low is not None and bounds.high is not None
        assert bounds.low <= parsed if bounds.low_inclusive else bounds.low < parsed
        assert parsed <= bounds.high
        echoed.add(json.loads(bounds.parse(spelling).model_dump_json())[bounds.name])
    (text,) = echoed
    assert "e" not in text.lower() and Decimal(text) == value
    assert "." not in text or not text.endswith(("0", "."))


@pytest.mark.parametrize("bounds", DECIMAL_FIELDS, ids=repr)
@given(data=st.data())
def test_an_out_of_range_or_non_finite_decimal_is_a_validation_error(
    bounds: Bounds, data: st.DataObject
) -> None:
    assert bounds.low is not None and bounds.high is not None and bounds.places is not None
    below = st.decimals(max_value=bounds.low, allow_nan=False, allow_infinity=False).filter(
        lambda v: v < bounds.low or not bounds.low_inclusive  # type: ignore[operator]
    )
    above = st.decimals(min_value=bounds.high, allow_nan=False, allow_infinity=False).filter(
        lambda v: v > bounds.high  # type: ignore[operator]
    )
    too_precise = st.decimals(
        min_value=bounds.low, max_value=bounds.high, places=bounds.places + 1
    ).filter(lambda v: v != v.quantize(Decimal(1).scaleb(-bounds.places)))  # type: ignore[operator]
    non_finite = st.sampled_from(["NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "1E+400"])
    value = data.draw(st.one_of(below.map(str), above.map(str), too_precise.map(str), non_finite))
    with pytest.raises(ValidationError):
        bounds.parse(value)


# Near misses of a decimal: the characters of one, and what Decimal() alone would forgive
# (spaces, "_", other scripts' digits).
decimal_like = st.text(alphabet="0123456789.eE+-_ \n\u0661\uff11", max_size=12)


@pytest.mark.parametrize("bounds", DECIMAL_FIELDS, ids=repr)
@given(data=st.data())
def test_a_string_is_a_decimal_exactly_when_the_document_says_so(
    bounds: Bounds, data: st.DataObject
) -> None:
    pattern = bounds.pattern()
    text = data.draw(st.one_of(st.from_regex(pattern, fullmatch=True), decimal_like, st.text()))
    # What a client's validator makes of the pattern: JSON Schema's regular expressions.
    if not jsonschema_rs.validator_for({"type": "string", "pattern": pattern}).is_valid(text):
        with pytest.raises(ValidationError):
            bounds.parse(text)
        return
    try:
        value = Decimal(text)
    except ArithmeticError:  # an exponent beyond any context: far out of bounds
        admitted = False
    else:
        admitted = bounds.admits(value)
    if not admitted:
        with pytest.raises(ValidationError):
            bounds.parse(text)
        return
    assert getattr(bounds.parse(text), bounds.name) == value
