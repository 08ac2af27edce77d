"""Public endpoints of the decision chains: any key may read any bot's chain, its signed head
and the keys that sign heads."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query

from app.bots import repository as bots
from app.core.errors import NotFound, error_responses
from app.deps import CallerDep, ReadSessionsDep, RuntimeDep
from app.verification import service
from app.verification.canonical import GENESIS_HASH, time_text
from app.verification.schemas import (
    ChainedDecision,
    ChainHeadOut,
    ChainPage,
    SigningKeyOut,
    SigningKeysOut,
)

router = APIRouter(prefix="/api/v1", tags=["verification"])


@router.get("/bots/{bot_id}/decisions", response_model=ChainPage, responses=error_responses(404))
async def list_chained_decisions(
    bot_id: str,
    _: CallerDep,
    sessions: ReadSessionsDep,
    after: Annotated[int, Query(ge=0, description="the seq to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
) -> ChainPage:
    """The bot's decisions in chain order, each with everything it was made from (but the
    prompt text) and its seq, prev_hash and hash (docs/verification.md)."""
    async with sessions() as session:
        if await bots.get(session, bot_id) is None:
            raise NotFound("bot")
        records = await service.chain_page(session, bot_id, after, limit + 1)
    items = [ChainedDecision.model_validate(r) for r in records[:limit]]
    return ChainPage(items=items, next_after=items[-1].seq if len(records) > limit else None)


@router.get("/bots/{bot_id}/chain", response_model=ChainHeadOut, responses=error_responses(404))
async def get_chain_head(bot_id: str, _: CallerDep, sessions: ReadSessionsDep) -> ChainHeadOut:
    """The bot's chain head and its Ed25519 signature by one of /signing-keys."""
    async with sessions() as session:
        if await bots.get(session, bot_id) is None:
            raise NotFound("bot")
        head = await service.head_of(session, bot_id)
    if head is None:
        return ChainHeadOut(
            bot_id=bot_id, seq=0, hash=GENESIS_HASH, signed_at=None, key_id=None, signature=None
        )
    return ChainHeadOut(
        bot_id=bot_id,
        seq=head.seq,
        hash=head.hash,
        signed_at=time_text(head.signed_at),
        key_id=head.key_id,
        signature=head.signature,
    )


@router.get("/signing-keys", response_model=SigningKeysOut)
async def list_signing_keys(_: CallerDep, runtime: RuntimeDep) -> SigningKeysOut:
    """The public keys that sign chain heads, by id: the current one and those retired."""
    return SigningKeysOut(
        keys=[
            SigningKeyOut(
                key_id=key.key_id,
                public_key=base64.b64encode(key.public_key).decode(),
                status="current" if key.current else "retired",
            )
            for key in runtime.signing.public_keys()
        ]
    )
