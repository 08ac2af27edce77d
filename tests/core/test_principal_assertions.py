"""The assertion format and its verifier: golden vectors for both algorithms and properties.

The test side signs with PyNaCl and python-ecdsa; the verifier uses `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import ecdsa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.principal_assertions import (
    Algorithm,
    AssertionVerifier,
    InvalidAssertion,
    RequestFacts,
    VerifyingKey,
    decode_public_key,
    load_public_key,
)
from tests.assertion_signers import (
    DOMAIN,
    Ed25519Signer,
    Secp256k1Signer,
    Signer,
    assertion_headers,
    assertion_json,
    b64url,
)

IAT = 1764115200
PRINCIPAL = "ryjl3-tyaaa-aaaaa-aaaba-cai"
PREFIX = "abcd1234"
BODY = b'{"bot_id":"x"}'
SESSION = {"v": 1, "principal": PRINCIPAL, "api_key_prefix": PREFIX, "iat": IAT, "exp": IAT + 900}
WRITE = {
    **SESSION,
    "method": "POST",
    "path": "/api/v1/subscriptions",
    "body_sha256": hashlib.sha256(BODY).hexdigest(),
    "idempotency_key": "outcall-1",
}
ED25519 = Ed25519Signer(bytes(range(32)))
SECP256K1 = Secp256k1Signer(0xC0FFEE)

# Written down once; the server must keep accepting exactly these bytes.
SESSION_ASSERTION = (
    "eyJhcGlfa2V5X3ByZWZpeCI6ImFiY2QxMjM0IiwiZXhwIjoxNzY0MTE2MTAwLCJpYXQiOjE3NjQxMTUyMDAsInBy"
    "aW5jaXBhbCI6InJ5amwzLXR5YWFhLWFhYWFhLWFhYWJhLWNhaSIsInYiOjF9"
)
WRITE_ASSERTION = (
    "eyJhcGlfa2V5X3ByZWZpeCI6ImFiY2QxMjM0IiwiYm9keV9zaGEyNTYiOiIyYjBkZGFjNDM1MjMyYTQ2Y2QzYmE5"
    "NGVhZDY5MDIxZWVhYTI5OWI1NzhjZmI5MThkMWU5NmI0ODc5Y2JjNTAxIiwiZXhwIjoxNzY0MTE2MTAwLCJpYXQi"
    "OjE3NjQxMTUyMDAsImlkZW1wb3RlbmN5X2tleSI6Im91dGNhbGwtMSIsIm1ldGhvZCI6IlBPU1QiLCJwYXRoIjoi"
    "L2FwaS92MS9zdWJzY3JpcHRpb25zIiwicHJpbmNpcGFsIjoicnlqbDMtdHlhYWEtYWFhYWEtYWFhYmEtY2FpIiwi"
    "diI6MX0"
)
GOLDEN = {
    "ed25519": {
        "public_key": "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
        "session": (
            "T2Vb6nHHFM6xKx4G2Y-9ccKdIXOMgjsZylA7eLwsyQLufp3UtwbqiuibIym2bd-3UvBAfXfF7Dy8Yt_MYTANBw"
        ),
        "write": (
            "rjyP-iVfzEB1M_1WXooCUmsw3SaJSB8lHZfK0nK-HopDQZo0XMD8Jj4CU8W8XVxvW6KS9pdrKWB7mYA6p1OBCQ"
        ),
    },
    # ICP's threshold ECDSA is randomised; these r||s bytes were produced once (python-ecdsa,
    # RFC 6979) and must verify as they are.
    "secp256k1": {
        "public_key": "AypbvLDu3lKOar5fLsUK14h+tWd684OkYLBe4jv4kt/l",
        "session": (
            "Uj73Tr4Xnuf0Wgsb8mApDdKHJB-q8nK0tF0dU1M47rU4MaT49JT87DV9KrrJHyQPYMBrSIkIBZi-RCA8tlw6CA"
        ),
        "write": (
            "oyiOSPz2kLYREcZ-kSxtMVpiIsI5NbK7JL2dKMHA0pyKR8uac5bc8NyU_cRB-HaJ4bmPhng7tSNbSBVaVjQOjg"
        ),
    },
}


def key_of(signer: Signer, key_id: str = "k1") -> VerifyingKey:
    algorithm = Algorithm(signer.algorithm)
    return load_public_key(key_id, algorithm, decode_public_key(algorithm, signer.public_key_b64))


def facts(claims: dict[str, Any] = WRITE, **changes: Any) -> RequestFacts:
    write = "method" in claims
    values: dict[str, Any] = {
        "principal": claims["principal"],
        "api_key_prefix": claims["api_key_prefix"],
        "write": write,
        "method": claims.get("method", "GET"),
        "path": claims.get("path", "/api/v1/subscriptions"),
        "body": BODY if write else b"",
        "idempotency_key": claims.get("idempotency_key"),
    }
    return RequestFacts(**{**values, **changes})


def verify(
    headers: dict[str, str],
    request: RequestFacts,
    keys: tuple[VerifyingKey, ...],
    now: float = IAT + 1,
) -> None:
    verifier = AssertionVerifier(clock=lambda: now)
    verifier.verify(
        headers["X-Principal-Assertion"], headers["X-Principal-Signature"], keys, request
    )


@pytest.mark.parametrize("signer", [ED25519, SECP256K1], ids=lambda s: s.algorithm)
@pytest.mark.parametrize("kind", ["session", "write"])
def test_golden_vectors(signer: Signer, kind: str) -> None:
    claims, assertion = (
        (SESSION, SESSION_ASSERTION) if kind == "session" else (WRITE, WRITE_ASSERTION)
    )
    golden = GOLDEN[signer.algorithm]
    assert signer.public_key_b64 == golden["public_key"]
    assert b64url(assertion_json(claims)) == assertion
    signature = golden[kind]
    if signer.algorithm == "ed25519":  # deterministic: the signer reproduces the very bytes
        assert assertion_headers(signer, claims)["X-Principal-Signature"] == signature
    headers = {"X-Principal-Assertion": assertion, "X-Principal-Signature": signature}
    verify(headers, facts(claims), (key_of(signer),))
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64


def test_a_der_encoded_ecdsa_signature_is_not_the_format() -> None:
    raw = SECP256K1._key.sign_digest_deterministic(
        hashlib.sha256(DOMAIN + assertion_json(SESSION)).digest(),
        hashfunc=hashlib.sha256,
        sigencode=ecdsa.util.sigencode_der,
    )
    headers = {"X-Principal-Assertion": SESSION_ASSERTION, "X-Principal-Signature": b64url(raw)}
    with pytest.raises(InvalidAssertion, match="signature"):
        verify(headers, facts(SESSION), (key_of(SECP256K1),))


def test_a_non_canonical_assertion_is_refused_even_when_signed() -> None:
    spaced = json.dumps(SESSION, sort_keys=True).encode()
    headers = {
        "X-Principal-Assertion": b64url(spaced),
        "X-Principal-Signature": b64url(ED25519.sign(DOMAIN + spaced)),
    }
    with pytest.raises(InvalidAssertion, match="assertion"):
        verify(headers, facts(SESSION), (key_of(ED25519),))


FIELD_VALUES = {
    "v": st.integers(min_value=0, max_value=5),
    "principal": st.text(min_size=1, max_size=40),
    "api_key_prefix": st.text(min_size=1, max_size=8),
    "iat": st.integers(min_value=IAT - 2000, max_value=IAT + 2000),
    "exp": st.integers(min_value=IAT - 2000, max_value=IAT + 2000),
    "method": st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "post"]),
    "path": st.text(min_size=1, max_size=40),
    "body_sha256": st.binary(max_size=20).map(lambda b: hashlib.sha256(b).hexdigest()),
    "idempotency_key": st.text(min_size=1, max_size=20),
}
KEYS = (key_of(ED25519, "ed"), key_of(SECP256K1, "ec"))


@settings(max_examples=300, deadline=None)
@given(
    signer=st.sampled_from([ED25519, SECP256K1]),
    field=st.sampled_from(sorted(WRITE)),
    data=st.data(),
)
def test_any_change_to_a_signed_field_after_signing_is_refused(
    signer: Signer, field: str, data: st.DataObject
) -> None:
    headers = assertion_headers(signer, WRITE)
    value = data.draw(FIELD_VALUES[field].filter(lambda v: v != WRITE[field]))
    tampered = b64url(assertion_json({**WRITE, field: value}))
    with pytest.raises(InvalidAssertion):
        verify({**headers, "X-Principal-Assertion": tampered}, facts(), KEYS)


@settings(max_examples=300, deadline=None)
@given(
    signer=st.sampled_from([ED25519, SECP256K1]),
    field=st.sampled_from(
        ["principal", "api_key_prefix", "method", "path", "body", "idempotency_key"]
    ),
    data=st.data(),
)
def test_a_signed_assertion_for_another_request_is_refused(
    signer: Signer, field: str, data: st.DataObject
) -> None:
    """A swapped principal, another key's prefix, another method, path or body, or another
    Idempotency-Key (or none): the signature is good, the request is not the signed one."""
    current = getattr(facts(), field)
    strategy = {
        "principal": st.text(min_size=1, max_size=40),
        "api_key_prefix": st.text(min_size=1, max_size=8),
        "method": st.sampled_from(["PUT", "PATCH", "DELETE", "GET"]),
        "path": st.text(min_size=1, max_size=40),
        "body": st.binary(max_size=40),
        "idempotency_key": st.none() | st.text(min_size=1, max_size=20),
    }[field]
    other = data.draw(strategy.filter(lambda v: v != current))
    headers = assertion_headers(signer, WRITE)
    verify(headers, facts(), KEYS)  # the request it was signed for passes
    with pytest.raises(InvalidAssertion, match=field.replace("body", "body_sha256")):
        verify(headers, facts(**{field: other}), KEYS)


@settings(max_examples=300, deadline=None)
@given(
    signer=st.sampled_from([ED25519, SECP256K1]),
    lifetime=st.integers(min_value=-100, max_value=2000),
    offset=st.integers(min_value=-1200, max_value=2400),
)
def test_time_window(signer: Signer, lifetime: int, offset: int) -> None:
    """Valid exactly when 0 < exp - iat <= 15 min and iat - 60 s <= now <= exp + 60 s."""
    claims = {**SESSION, "exp": IAT + lifetime}
    headers = assertion_headers(signer, claims)
    now = IAT + offset
    valid = 0 < lifetime <= 900 and -60 <= offset <= lifetime + 60
    if valid:
        verify(headers, facts(claims), KEYS, now=now)
    else:
        with pytest.raises(InvalidAssertion, match=r"iat|exp"):
            verify(headers, facts(claims), KEYS, now=now)


@settings(max_examples=100, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), secret=st.integers(1, 2**200))
def test_a_wrong_key_is_refused(seed: bytes, secret: int) -> None:
    for stranger in (Ed25519Signer(seed), Secp256k1Signer(secret)):
        if stranger.public_key_b64 in (ED25519.public_key_b64, SECP256K1.public_key_b64):
            continue
        with pytest.raises(InvalidAssertion, match="signature"):
            verify(assertion_headers(stranger, SESSION), facts(SESSION), KEYS)


def test_a_session_assertion_does_not_cover_a_write_nor_a_write_one_a_read() -> None:
    session = assertion_headers(ED25519, SESSION)
    with pytest.raises(InvalidAssertion, match="method"):
        verify(session, facts(SESSION, write=True, method="POST"), KEYS)
    write = assertion_headers(ED25519, WRITE)
    with pytest.raises(InvalidAssertion, match="method"):
        verify(write, facts(write=False, method="GET"), KEYS)


def test_the_cache_still_checks_time_and_request() -> None:
    now = [IAT + 1.0]
    verifier = AssertionVerifier(clock=lambda: now[0])
    headers = assertion_headers(ED25519, SESSION)
    args = (headers["X-Principal-Assertion"], headers["X-Principal-Signature"], KEYS)
    verifier.verify(*args, facts(SESSION))
    with pytest.raises(InvalidAssertion, match="principal"):
        verifier.verify(*args, facts(SESSION, principal="aaaaa-aa"))
    now[0] = IAT + 900 + 61
    with pytest.raises(InvalidAssertion, match="exp"):
        verifier.verify(*args, facts(SESSION))


def test_public_keys_are_checked() -> None:
    from app.core.principal_assertions import InvalidPublicKey

    for algorithm, text in [
        (Algorithm.ed25519, SECP256K1.public_key_b64),
        (Algorithm.secp256k1, ED25519.public_key_b64),
        (Algorithm.secp256k1, base64.b64encode(b"\x02" + b"\xff" * 32).decode()),
        (Algorithm.ed25519, "not base64!"),
    ]:
        with pytest.raises(InvalidPublicKey):
            decode_public_key(algorithm, text)


def test_headers_are_strict_base64url() -> None:
    headers = assertion_headers(ED25519, SESSION)
    for name, field in (
        ("X-Principal-Assertion", "assertion"),
        ("X-Principal-Signature", "signature"),
    ):
        for bad in (headers[name] + "!", "+" + headers[name][1:], headers[name] + "==="):
            with pytest.raises(InvalidAssertion, match=field):
                verify({**headers, name: bad}, facts(SESSION), KEYS)


def test_the_cache_stays_bounded() -> None:
    verifier = AssertionVerifier(clock=lambda: IAT + 1.0, max_entries=3)
    for n in range(10):
        claims = {**SESSION, "principal": f"p{n}"}
        headers = assertion_headers(ED25519, claims)
        verifier.verify(
            headers["X-Principal-Assertion"],
            headers["X-Principal-Signature"],
            KEYS,
            facts(claims),
        )
        assert len(verifier._cache) <= 3


def test_an_unknown_field_is_refused_without_being_echoed() -> None:
    claims = {**SESSION, "<script>": 1}
    with pytest.raises(InvalidAssertion) as refused:
        verify(assertion_headers(ED25519, claims), facts(SESSION), KEYS)
    assert refused.value.field == "assertion"
