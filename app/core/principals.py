"""Textual ICP principals: validation of what the marketplace canister asserts.

A principal's text is base32 (RFC 4648, lower case, no padding) of CRC32(bytes) || bytes,
cut into groups of five separated by dashes. We accept only the canonical spelling, so one
principal has exactly one text and one user row.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import zlib

MAX_PRINCIPAL_BYTES = 29
# The textual form of the longest principal: its CRC32 and bytes in base32, dashes every 5.
MAX_PRINCIPAL_TEXT = 63
_TEXT = re.compile(r"^[a-z2-7]{5}(-[a-z2-7]{5})*(-[a-z2-7]{1,4})?$|^[a-z2-7]{1,4}$")

# Never renters: every unauthenticated ICP caller shares the anonymous principal, and the
# management canister is not a person.
ANONYMOUS = "2vxsx-fae"
MANAGEMENT_CANISTER = "aaaaa-aa"
_NOT_RENTERS = frozenset({ANONYMOUS, MANAGEMENT_CANISTER})


class InvalidPrincipal(ValueError):
    pass


def encode_principal(raw: bytes) -> str:
    checksum = zlib.crc32(raw).to_bytes(4, "big")
    text = base64.b32encode(checksum + raw).decode().rstrip("=").lower()
    return "-".join(text[i : i + 5] for i in range(0, len(text), 5))


def parse_principal(text: str) -> bytes:
    """Return the principal's bytes, or raise InvalidPrincipal saying what is wrong."""
    if not _TEXT.match(text):
        raise InvalidPrincipal("not a textual principal (lower-case base32 groups of 5)")
    compact = text.replace("-", "").upper()
    try:
        decoded = base64.b32decode(compact + "=" * (-len(compact) % 8))
    except binascii.Error as exc:
        raise InvalidPrincipal("not valid base32") from exc
    if len(decoded) < 4:
        raise InvalidPrincipal("too short to hold a checksum")
    checksum, raw = decoded[:4], decoded[4:]
    if len(raw) > MAX_PRINCIPAL_BYTES:
        raise InvalidPrincipal(f"longer than {MAX_PRINCIPAL_BYTES} bytes")
    if zlib.crc32(raw).to_bytes(4, "big") != checksum:
        raise InvalidPrincipal("checksum mismatch")
    if encode_principal(raw) != text:
        raise InvalidPrincipal("not in canonical form")
    return raw


# Every renter request validates its principal (base32 and CRC32, on the hot path of every
# read). Only valid texts are kept: an exception is not cached.
@functools.lru_cache(maxsize=16_384)
def validate_renter_principal(text: str) -> str:
    parse_principal(text)
    if text in _NOT_RENTERS:
        raise InvalidPrincipal(
            "the anonymous principal and the management canister are not renters"
        )
    return text
