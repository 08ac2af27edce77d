"""The canister's side of signed principal assertions, written with other libraries than the
server's `cryptography` (PyNaCl for Ed25519, python-ecdsa for secp256k1), so the format is not
checked against itself."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import ecdsa
from nacl.signing import SigningKey

DOMAIN = b"botmarket-principal-assertion-v1\n"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion_json(claims: dict[str, Any]) -> bytes:
    return json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Ed25519Signer:
    seed: bytes
    algorithm: str = "ed25519"
    _key: SigningKey = field(init=False)

    def __post_init__(self) -> None:
        self._key = SigningKey(self.seed)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(bytes(self._key.verify_key)).decode()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


@dataclass
class Secp256k1Signer:
    secret: int
    algorithm: str = "secp256k1"
    _key: ecdsa.SigningKey = field(init=False)

    def __post_init__(self) -> None:
        self._key = ecdsa.SigningKey.from_secret_exponent(self.secret, curve=ecdsa.SECP256k1)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self._key.get_verifying_key().to_string("compressed")).decode()

    def sign(self, message: bytes) -> bytes:
        # What sign_with_ecdsa does: sign the SHA-256 of the message, return r||s (64 bytes).
        digest = hashlib.sha256(message).digest()
        return self._key.sign_digest_deterministic(
            digest, hashfunc=hashlib.sha256, sigencode=ecdsa.util.sigencode_string
        )


Signer = Ed25519Signer | Secp256k1Signer


def session_claims(
    principal: str, api_key_prefix: str, *, now: int | None = None, lifetime: int = 600
) -> dict[str, Any]:
    iat = int(time.time()) if now is None else now
    return {
        "v": 1,
        "principal": principal,
        "api_key_prefix": api_key_prefix,
        "iat": iat,
        "exp": iat + lifetime,
    }


def write_claims(
    principal: str,
    api_key_prefix: str,
    method: str,
    path: str,
    body: bytes,
    idempotency_key: str | None = None,
    **session: Any,
) -> dict[str, Any]:
    claims = session_claims(principal, api_key_prefix, **session)
    claims.update(method=method, path=path, body_sha256=hashlib.sha256(body).hexdigest())
    if idempotency_key is not None:
        claims["idempotency_key"] = idempotency_key
    return claims


def assertion_headers(signer: Signer, claims: dict[str, Any]) -> dict[str, str]:
    raw = assertion_json(claims)
    return {
        "X-Principal-Assertion": b64url(raw),
        "X-Principal-Signature": b64url(signer.sign(DOMAIN + raw)),
    }
