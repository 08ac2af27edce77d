"""Shared field types for API bodies."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler, PlainSerializer
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# The decimal syntax the document gives (pydantic's pattern for what Decimal() reads), which
# the API holds strings to: Decimal() alone also forgives spaces, `_` and other scripts' digits
# (" 1_0", Arabic-Indic "1"), which no pattern a client's validator runs can say.
DECIMAL_SPELLING = re.compile(
    GenerateJsonSchema().build_decimal_pattern(core_schema.decimal_schema(allow_inf_nan=False))
)
# What `_plain` writes.
PLAIN_SPELLING = r"^-?[0-9]+(?:\.[0-9]*[1-9])?$"


def _plain(value: Decimal) -> str:
    # One spelling for one amount on every backend: no exponent, no trailing zeros.
    text = format(value.normalize(), "f")
    return text


def _spelled_as_a_decimal(value: Any) -> Any:
    if isinstance(value, str) and not DECIMAL_SPELLING.fullmatch(value):
        raise ValueError("must be a decimal number such as 12.5 or 1.25E+3")
    return value


class _DocumentedSpelling:
    """Gives a decimal's string form in the document its pattern: in a request, the syntax
    with the field's places (and digits) for a string without exponent, as pydantic builds it;
    in a response, the plain spelling."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if handler.mode == "serialization":
            json_schema["pattern"] = PLAIN_SPELLING
            return json_schema
        decimal: Any = schema
        while decimal["type"] != "decimal":  # under the spelling check's validator
            decimal = decimal["schema"]
        pattern = GenerateJsonSchema().build_decimal_pattern(decimal)
        for branch in json_schema["anyOf"]:  # a JSON number or a string
            if branch["type"] == "string":
                branch["pattern"] = pattern
        return json_schema


_CHECKED = BeforeValidator(_spelled_as_a_decimal)
_WRITTEN = PlainSerializer(_plain, return_type=str, when_used="json")
_DOCUMENTED = _DocumentedSpelling()

Amount = Annotated[Decimal, _CHECKED, _WRITTEN, _DOCUMENTED]
"""A decimal written in one spelling: equal values ("0.50", "0.5", "5E-1") hash alike and echo
alike. Every body field of this type also bounds its range and places, so a value such as
1e400 is a 422 rather than a number stored and echoed in exponent notation. A string must be
a plain decimal number, as the document's pattern says."""

# Places a body may give: quote-currency money (Binance quotes to 8), percentages and weights.
QUOTE_PLACES = 8
PERCENT_PLACES = 4
# Far above any position or loss limit a renter means, far inside NUMERIC(36, 18).
MAX_QUOTE = Decimal(10) ** 12

# Amounts bounded in the type, for optional fields (`PositiveQuote | None`): pydantic puts bounds
# on the decimal itself (and so in the document) only when they come before the spelling check,
# which a `Field()` on a union, or around `Amount`, does not.
PositiveQuote = Annotated[
    Annotated[Decimal, Field(gt=0, le=MAX_QUOTE, decimal_places=QUOTE_PLACES)],
    _CHECKED,
    _WRITTEN,
    _DOCUMENTED,
]
PositivePercent = Annotated[
    Annotated[Decimal, Field(gt=0, le=100, decimal_places=PERCENT_PLACES)],
    _CHECKED,
    _WRITTEN,
    _DOCUMENTED,
]
# A gain, which may pass 100 %.
PositiveGainPercent = Annotated[
    Annotated[Decimal, Field(gt=0, le=1000, decimal_places=PERCENT_PLACES)],
    _CHECKED,
    _WRITTEN,
    _DOCUMENTED,
]
