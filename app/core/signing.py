"""The Ed25519 keyring that signs each bot's decision-chain head.

Keys are listed newest first, `<key_id>:<base64 32-byte seed>` (or a bare seed, whose id is
derived from its public key); the newest signs and every key stays published, so a head signed
before a rotation still verifies. Mirrors the Fernet keyring (app/core/crypto.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class SigningKeyringError(ValueError):
    pass


@dataclass(frozen=True)
class PublicSigningKey:
    key_id: str
    public_key: bytes  # raw, 32 bytes
    current: bool  # signs new heads; the others only verify heads signed earlier


@dataclass(frozen=True)
class Signature:
    key_id: str
    signature: bytes


def generate_seed() -> str:
    """A new key for SIGNING_KEYS: a base64 32-byte Ed25519 seed."""
    return base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()


def _private_key(key_id: str, seed: str) -> Ed25519PrivateKey:
    try:
        raw = base64.b64decode(seed, validate=True)
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyringError(
            f"SIGNING_KEYS entry {key_id!r} is not a base64 32-byte Ed25519 seed"
        ) from exc


@dataclass(frozen=True)
class SigningKeyring:
    _keys: tuple[tuple[str, Ed25519PrivateKey], ...]

    @classmethod
    def parse(cls, text: str) -> SigningKeyring:
        keys: list[tuple[str, Ed25519PrivateKey]] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            key_id, _, seed = entry.rpartition(":")
            key = _private_key(key_id or "(unnamed)", seed)
            key_id = key_id or hashlib.sha256(key.public_key().public_bytes_raw()).hexdigest()[:12]
            if key_id in (known for known, _ in keys):
                raise SigningKeyringError(f"SIGNING_KEYS names key id {key_id!r} twice")
            keys.append((key_id, key))
        if not keys:
            raise SigningKeyringError("SIGNING_KEYS holds no key")
        return cls(tuple(keys))

    def sign(self, message: bytes) -> Signature:
        key_id, key = self._keys[0]
        return Signature(key_id, key.sign(message))

    def public_keys(self) -> list[PublicSigningKey]:
        return [
            PublicSigningKey(key_id, key.public_key().public_bytes_raw(), n == 0)
            for n, (key_id, key) in enumerate(self._keys)
        ]
