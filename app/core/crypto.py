"""The Fernet keyring that protects stored exchange credentials.

Keys are listed newest first; the newest encrypts and every key decrypts (MultiFernet). Each
ciphertext row records the id of the key that wrote it, so rotation knows what is left to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class KeyringError(ValueError):
    pass


@dataclass(frozen=True)
class Keyring:
    key_ids: tuple[str, ...]
    _fernet: MultiFernet

    @classmethod
    def parse(cls, text: str) -> Keyring:
        ids: list[str] = []
        fernets: list[Fernet] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            key_id, _, key = entry.rpartition(":")
            key_id = key_id or hashlib.sha256(key.encode()).hexdigest()[:12]
            try:
                fernets.append(Fernet(key.encode()))
            except ValueError as exc:
                raise KeyringError(f"FERNET_KEYS entry {key_id!r} is not a Fernet key") from exc
            if key_id in ids:
                raise KeyringError(f"FERNET_KEYS names key id {key_id!r} twice")
            ids.append(key_id)
        if not fernets:
            raise KeyringError("FERNET_KEYS holds no key")
        return cls(key_ids=tuple(ids), _fernet=MultiFernet(fernets))

    @property
    def primary_key_id(self) -> str:
        return self.key_ids[0]

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise KeyringError("ciphertext does not decrypt under any configured key") from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key without exposing the plaintext to the caller."""
        return self._fernet.rotate(token.encode()).decode()
