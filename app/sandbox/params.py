"""A request's parameters, read as Binance reads them before any endpoint looks at them.

Each typed parameter's text must lie in its type's legal range, or the answer is -1100 naming
that range (so `1E-3` is no quantity and `abc` no limit); a parameter sent twice is -1101; one
sent in both the query string and the body takes the query string's value. Ranges are written
as Binance prints them in its messages.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from app.sandbox.exchange import SandboxError

INTEGER = re.compile(r"^[0-9]{1,20}$")  # LONG and INT parameters
DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")

LEGAL_RANGES = {
    "timestamp": INTEGER,
    "startTime": INTEGER,
    "endTime": INTEGER,
    "limit": INTEGER,
    "orderId": INTEGER,
    "recvWindow": DECIMAL,  # milliseconds, with up to microseconds behind the point
    "quantity": DECIMAL,
    "quoteOrderQty": DECIMAL,
    "price": DECIMAL,
    "newClientOrderId": CLIENT_ORDER_ID,
}


def read_params(query: str, body: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in (body, query):  # the query string last: its values win
        pairs = parse_qsl(part)
        if len({name for name, _ in pairs}) != len(pairs):
            raise SandboxError(-1101, "Duplicate values for a parameter detected.")
        params |= dict(pairs)
    for name, value in params.items():
        legal = LEGAL_RANGES.get(name)
        if legal is not None and not legal.fullmatch(value):
            raise SandboxError(
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is "
                f"'{legal.pattern}'.",
            )
    return params
