"""An independent check of a served chain: the rule of docs/verification.md written again
from the document with hashlib, rfc8785 and cryptography, importing nothing of the app."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ZEROS = "0" * 64


def record_hash(record: dict[str, Any]) -> str:
    body = {name: value for name, value in record.items() if name != "hash"}
    return hashlib.sha256(record["prev_hash"].encode() + b"\n" + rfc8785.dumps(body)).hexdigest()


def check_chain(records: list[dict[str, Any]]) -> None:
    """Every served record's hash, and each prev_hash the hash before it, from seq 1."""
    previous = ZEROS
    for expected_seq, record in enumerate(records, start=1):
        assert record["seq"] == expected_seq, f"seq {record['seq']} where {expected_seq} was due"
        assert record["prev_hash"] == previous, f"seq {expected_seq} does not follow its prev"
        assert record_hash(record) == record["hash"], f"seq {expected_seq}: the hash differs"
        previous = record["hash"]


def check_head(head: dict[str, Any], keys: list[dict[str, Any]]) -> None:
    """The head's Ed25519 signature under its key from /signing-keys (raises if invalid)."""
    (key,) = [k for k in keys if k["key_id"] == head["key_id"]]
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    signed = {name: head[name] for name in ("bot_id", "seq", "hash", "signed_at")}
    message = b"botmarket-chain-head-v1\n" + rfc8785.dumps(signed)
    public.verify(base64.b64decode(head["signature"]), message)
