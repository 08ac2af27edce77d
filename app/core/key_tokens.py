"""API key tokens: `bmk_<8-char prefix>_<secret>`, stored only as a SHA-256 digest.

The secret part carries 256 bits from `secrets`, so a fast digest is safe to store and to look
up by; a slow password hash would cap the gateway at a few requests per second.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "bmk"  # noqa: S105 - a public marker, not a secret
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class NewApiKey:
    plaintext: str
    prefix: str
    digest: str


def digest_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_api_key() -> NewApiKey:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    secret = secrets.token_urlsafe(32)  # 32 random bytes = 256 bits
    plaintext = f"{TOKEN_PREFIX}_{prefix}_{secret}"
    return NewApiKey(plaintext=plaintext, prefix=prefix, digest=digest_api_key(plaintext))


def digests_match(expected: str, actual: str) -> bool:
    return hmac.compare_digest(expected.encode(), actual.encode())
