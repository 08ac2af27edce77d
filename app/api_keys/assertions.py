"""When a renter request must carry the canister's signed principal assertion, and the verdict.

The verdict is reached once per request and kept in the ASGI scope: the idempotency layer needs
it before it claims or replays a write (a forged copy must neither run nor poison the key for
the genuine copies), and the renter dependency needs it for every read and write; both must
agree even if the clock crosses an expiry between them.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Scope

from app.api_keys.authenticator import Caller
from app.audit import WRITE_METHODS
from app.core.errors import InvalidPrincipalAssertion
from app.core.principal_assertions import (
    AssertionMode,
    AssertionVerifier,
    InvalidAssertion,
    RequestFacts,
)

ASSERTION_HEADER = "X-Principal-Assertion"
SIGNATURE_HEADER = "X-Principal-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_VERDICT = "botmarket.principal_assertion"


def check_principal_assertion(verifier: AssertionVerifier, caller: Caller, scope: Scope) -> None:
    """Raise InvalidPrincipalAssertion unless this request may act for its X-Principal-ID."""
    if _VERDICT not in scope:
        scope[_VERDICT] = _judge(verifier, caller, scope)
    failure: tuple[str, str] | None = scope[_VERDICT]
    if failure is not None:
        header, field = failure
        raise InvalidPrincipalAssertion(
            f"the principal assertion is not valid: {field}",
            details=[{"loc": f"header.{header}", "message": field}],
        )


def _judge(verifier: AssertionVerifier, caller: Caller, scope: Scope) -> tuple[str, str] | None:
    if caller.assertion_mode is AssertionMode.off:
        return None
    headers = Headers(scope=scope)
    assertion = headers.get(ASSERTION_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if assertion is None and signature is None and caller.assertion_mode is AssertionMode.optional:
        return None
    if assertion is None:
        return ASSERTION_HEADER, "missing"
    if signature is None:
        return SIGNATURE_HEADER, "missing"
    write = scope["method"] in WRITE_METHODS
    idempotency_key = headers.get(IDEMPOTENCY_HEADER)
    facts = RequestFacts(
        principal=headers.get("x-principal-id", ""),
        api_key_prefix=caller.prefix,
        write=write,
        method=scope["method"],
        path=_path_as_sent(scope),
        body=scope.get("botmarket.body", b""),
        idempotency_key=idempotency_key,
    )
    try:
        verifier.verify(assertion, signature, caller.assertion_keys, facts)
    except InvalidAssertion as exc:
        header = SIGNATURE_HEADER if exc.field == "signature" else ASSERTION_HEADER
        return header, exc.field
    if write and idempotency_key is None and caller.assertion_mode is AssertionMode.required:
        # The key is what makes a signed write happen once: without it, a captured copy could
        # be sent again (pause, reactivate, pause again) until its assertion expires.
        return IDEMPOTENCY_HEADER, "missing"
    return None


def _path_as_sent(scope: Scope) -> str:
    # The raw path, not the percent-decoded one: the canister signs the URL it sends.
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path
