"""Signed principal assertions: the marketplace canister proves which renter it acts for.

A marketplace key alone is a shared secret; whoever leaks it could act for every renter. With
assertion public keys on the key, a request for a renter must also carry a statement signed by
the canister's threshold key (which never leaves its subnet): `X-Principal-Assertion` is the
base64url of canonical JSON (sorted keys, no spaces) and `X-Principal-Signature` the base64url
signature over `DOMAIN + json`. Ed25519 (`sign_with_schnorr`) signs those bytes; secp256k1
(`sign_with_ecdsa`) signs their SHA-256 and returns the raw 64-byte r||s.

Verified assertions are cached by (assertion, signature) until they expire, so a renter's reads
cost one signature check per session; the time, principal, key and request bindings are still
checked on every request because they depend on the request and the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

DOMAIN = b"botmarket-principal-assertion-v1\n"
VERSION = 1
MAX_LIFETIME_S = 15 * 60
CLOCK_SKEW_S = 60
_MAX_HEADER_LENGTH = 4096
_MAX_CACHE_ENTRIES = 100_000
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_SESSION_FIELDS = frozenset({"v", "principal", "api_key_prefix", "iat", "exp"})
_WRITE_FIELDS = frozenset({"method", "path", "body_sha256", "idempotency_key"})
_SECP256K1_ORDER_BYTES = 32
_ED25519_P = 2**255 - 19
_ED25519_ORDER_8_Y = int.from_bytes(
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
)
# The y-coordinates of the eight points of small order (orders 1, 2, 4 and 8). Taken modulo p
# and with the sign bit dropped, they also catch every non-canonical encoding of those points.
_ED25519_SMALL_ORDER_Y = frozenset(
    {1, _ED25519_P - 1, 0, _ED25519_ORDER_8_Y, _ED25519_P - _ED25519_ORDER_8_Y}
)


class AssertionMode(StrEnum):
    off = "off"
    optional = "optional"  # unsigned requests pass; a signed one must verify (rollout)
    required = "required"


class Algorithm(StrEnum):
    ed25519 = "ed25519"
    secp256k1 = "secp256k1"


class InvalidAssertion(Exception):
    """Names only the field at fault: more would help a forger, less would not help a caller."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class InvalidPublicKey(ValueError):
    pass


@dataclass(frozen=True)
class VerifyingKey:
    id: str
    algorithm: Algorithm
    verify: Callable[[bytes, bytes], None]  # (signature, message); raises InvalidSignature


def decode_public_key(algorithm: Algorithm, public_key_b64: str) -> bytes:
    """The raw bytes of a base64 public key, checked to be a valid key of that algorithm."""
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except binascii.Error as exc:
        raise InvalidPublicKey("not base64") from exc
    load_public_key("", algorithm, raw)
    if algorithm is Algorithm.ed25519 and _is_small_order_ed25519(raw):
        # With such a key, the signature identity||0 verifies every message.
        raise InvalidPublicKey("an Ed25519 point of small order is not a public key")
    return raw


def load_public_key(key_id: str, algorithm: Algorithm, raw: bytes) -> VerifyingKey:
    """A verifier for a key: Ed25519 raw 32 bytes, or secp256k1 SEC1 compressed 33 bytes."""
    if algorithm is Algorithm.ed25519:
        if len(raw) != 32:
            raise InvalidPublicKey("an Ed25519 public key is 32 raw bytes")
        if _is_small_order_ed25519(raw):
            # Stored before registration refused such keys: it vouches for nothing, since
            # the signature identity||0 would verify every assertion under it.
            return VerifyingKey(key_id, algorithm, _refuse_every_signature)
        ed_key = Ed25519PublicKey.from_public_bytes(raw)
        return VerifyingKey(key_id, algorithm, ed_key.verify)
    if len(raw) != 33 or raw[0] not in (2, 3):
        raise InvalidPublicKey("a secp256k1 public key is 33 bytes, SEC1 compressed")
    try:
        ec_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
    except ValueError as exc:
        raise InvalidPublicKey("not a point on secp256k1") from exc

    def verify_ecdsa(signature: bytes, message: bytes) -> None:
        # ICP's sign_with_ecdsa returns r||s (32 bytes each); cryptography wants DER.
        if len(signature) != 2 * _SECP256K1_ORDER_BYTES:
            raise InvalidSignature
        r = int.from_bytes(signature[:_SECP256K1_ORDER_BYTES], "big")
        s = int.from_bytes(signature[_SECP256K1_ORDER_BYTES:], "big")
        ec_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))

    return VerifyingKey(key_id, algorithm, verify_ecdsa)


def _refuse_every_signature(signature: bytes, message: bytes) -> None:
    raise InvalidSignature


def _is_small_order_ed25519(raw: bytes) -> bool:
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    return y % _ED25519_P in _ED25519_SMALL_ORDER_Y


def canonical_json(claims: dict[str, object]) -> bytes:
    return json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()


def signed_message(assertion_json: bytes) -> bytes:
    return DOMAIN + assertion_json


def b64url_decode(text: str) -> bytes:
    # Only the one unpadded spelling of the bytes: the decoder skips foreign characters and
    # ignores padding and the unused low bits of the last character, which would let many
    # header values (each a cache entry and a signature check) stand for one assertion.
    if len(text) > _MAX_HEADER_LENGTH or not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))  # binascii.Error: ValueError
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise ValueError("not base64url")
    return raw


@dataclass(frozen=True)
class RequestFacts:
    """What the assertion must match, taken from the request and the calling key."""

    principal: str
    api_key_prefix: str
    write: bool
    method: str
    path: str  # path with query, as sent
    body: bytes
    idempotency_key: str | None


@dataclass(frozen=True)
class _Verified:
    claims: dict[str, object]
    key_id: str
    expires_at: float


def _int_field(claims: dict[str, object], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidAssertion(name)
    return value


def _parse(raw: bytes) -> dict[str, object]:
    try:
        claims = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # deep nesting exhausts the parser's stack
        raise InvalidAssertion("assertion") from exc
    # Only the canonical form is accepted, so one statement has exactly one byte string
    # (no duplicate keys, whitespace or reordering for a parser to read differently).
    if not isinstance(claims, dict) or canonical_json(claims) != raw:
        raise InvalidAssertion("assertion")
    # Not named in the error: the body of an error never echoes the caller's input.
    if set(claims) - _SESSION_FIELDS - _WRITE_FIELDS:
        raise InvalidAssertion("assertion")
    if claims.get("v") != VERSION or isinstance(claims.get("v"), bool):
        raise InvalidAssertion("v")
    iat, exp = _int_field(claims, "iat"), _int_field(claims, "exp")
    if not 0 < exp - iat <= MAX_LIFETIME_S:
        raise InvalidAssertion("exp")
    return claims


def _check_request(claims: dict[str, object], facts: RequestFacts, now: float) -> None:
    if claims.get("principal") != facts.principal:
        raise InvalidAssertion("principal")
    if claims.get("api_key_prefix") != facts.api_key_prefix:
        raise InvalidAssertion("api_key_prefix")
    if _int_field(claims, "iat") > now + CLOCK_SKEW_S:
        raise InvalidAssertion("iat")
    if _int_field(claims, "exp") < now - CLOCK_SKEW_S:
        raise InvalidAssertion("exp")
    # A write is bound to its exact request; a bound assertion is never a session one, so a
    # signed write cannot be replayed as anything else.
    if facts.write or _WRITE_FIELDS & set(claims):
        if claims.get("method") != facts.method:
            raise InvalidAssertion("method")
        if claims.get("path") != facts.path:
            raise InvalidAssertion("path")
        if claims.get("body_sha256") != hashlib.sha256(facts.body).hexdigest():
            raise InvalidAssertion("body_sha256")
        if claims.get("idempotency_key") != facts.idempotency_key:
            raise InvalidAssertion("idempotency_key")


class AssertionVerifier:
    def __init__(
        self, clock: Callable[[], float] = time.time, max_entries: int = _MAX_CACHE_ENTRIES
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        # (assertion header, signature header) -> what verified it and until when
        self._cache: dict[tuple[str, str], _Verified] = {}

    def verify(
        self,
        assertion_header: str,
        signature_header: str,
        keys: tuple[VerifyingKey, ...],
        facts: RequestFacts,
    ) -> None:
        now = self._clock()
        cache_key = (assertion_header, signature_header)
        cached = self._cache.get(cache_key)
        # A key removed by rotation no longer vouches for what it verified.
        if (
            cached is None
            or cached.expires_at < now
            or not any(k.id == cached.key_id for k in keys)
        ):
            cached = self._verify_signature(assertion_header, signature_header, keys)
            self._remember(cache_key, cached, now)
        _check_request(cached.claims, facts, now)

    def _verify_signature(
        self, assertion_header: str, signature_header: str, keys: tuple[VerifyingKey, ...]
    ) -> _Verified:
        try:
            raw = b64url_decode(assertion_header)
        except ValueError as exc:
            raise InvalidAssertion("assertion") from exc
        claims = _parse(raw)
        try:
            signature = b64url_decode(signature_header)
        except ValueError as exc:
            raise InvalidAssertion("signature") from exc
        message = signed_message(raw)
        for key in keys:
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            expires_at = float(_int_field(claims, "exp") + CLOCK_SKEW_S)
            return _Verified(claims=claims, key_id=key.id, expires_at=expires_at)
        raise InvalidAssertion("signature")

    def _remember(self, cache_key: tuple[str, str], verified: _Verified, now: float) -> None:
        if len(self._cache) >= self._max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v.expires_at >= now}
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
        self._cache[cache_key] = verified
