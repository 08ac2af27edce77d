"""Each bot's hash chain of decisions: appending a decision with its votes, reading the chain
and its signed head, and purging prompts past their retention.

Appending is serialised per bot. The decision's transaction first takes the bot's row lock
(app/bots/budget.lock, which the decision's store takes anyway) and then the head's row, FOR
UPDATE; on SQLite the transaction's earlier write holds the database's one write lock. So one
bot's appends read the head one after the other, each sees the last one committed, and the
link, the decision and the new head commit together or not at all: no gap, no fork, whatever
dies when. The unique (bot_id, seq) of the links is the last word should a writer ever skip
the lock. A link is never changed: a correction is a new decision.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import session_scope
from app.core.signing import SigningKeyring
from app.models import ChainHead, ChainLink, Decision, LlmVote
from app.subscriptions import repository as subscriptions
from app.verification import repository
from app.verification.canonical import (
    GENESIS_HASH,
    chain_hash,
    decimal_text,
    head_message,
    time_text,
)

PURGE_BATCH = 500


def _vote_record(vote: LlmVote) -> dict[str, Any]:
    return {
        "seat": vote.seat,
        "provider": vote.provider,
        "model": vote.model,
        "weight": decimal_text(vote.weight),
        "prompt_sha256": vote.prompt_sha256,
        "response_text": vote.response_text,
        "action": vote.action,
        "confidence": None if vote.confidence is None else decimal_text(vote.confidence),
        "reasoning": vote.reasoning,
        "cited_indicators": list(vote.cited_indicators),
        "abstain_reason": vote.abstain_reason,
        "tokens_in": vote.tokens_in,
        "tokens_out": vote.tokens_out,
        "cost_usd": decimal_text(vote.cost_usd),
        "latency_ms": vote.latency_ms,
    }


def candle_window(decision: Decision) -> dict[str, Any] | None:
    """The decision's candle window as served; None when it was not recorded."""
    if decision.candle_count is None or decision.candles_first_open_at is None:
        return None
    return {
        "count": decision.candle_count,
        "first_open_at": time_text(decision.candles_first_open_at),
        "last_open_at": time_text(decision.candle_open_at),
        "sha256": decision.candles_sha256,
    }


def record_of(link: ChainLink, decision: Decision, votes: Sequence[LlmVote]) -> dict[str, Any]:
    """The public record of a chained decision as served, without its hash: what the hash is
    taken over. `votes` in seat order."""
    return {
        "bot_id": link.bot_id,
        "seq": link.seq,
        "prev_hash": link.prev_hash,
        "decision_id": decision.id,
        "bot_version_id": decision.bot_version_id,
        "symbol": decision.symbol,
        "timeframe": decision.timeframe,
        "candle_open_at": time_text(decision.candle_open_at),
        "decided_at": time_text(decision.created_at),
        "candles": candle_window(decision),
        "indicators": decision.indicators,
        "indicator_score": decimal_text(decision.indicator_score),
        "combined_score": decimal_text(decision.combined_score),
        "action": decision.action,
        "rule_version": decision.rule_version,
        "rule_params": decision.rule_params,
        "fallback_reason": decision.fallback_reason,
        "votes": [_vote_record(vote) for vote in votes],
    }


async def append(
    session: AsyncSession,
    signer: SigningKeyring,
    bot_id: str,
    decision: Decision,
    votes: Sequence[LlmVote],
    now: datetime,
) -> ChainLink:
    """Chain the flushed `decision` (its votes in seat order) as the bot's next link and sign
    the new head, in the caller's transaction. The caller holds the bot's row lock, which
    serialises a bot's first append too, when there is no head row to lock yet."""
    head = await repository.locked_head(session, bot_id)
    link = ChainLink(
        decision_id=decision.id,
        bot_id=bot_id,
        seq=head.seq + 1 if head else 1,
        prev_hash=head.hash if head else GENESIS_HASH,
    )
    link.hash = chain_hash(link.prev_hash, record_of(link, decision, votes))
    session.add(link)
    signed = signer.sign(head_message(bot_id, link.seq, link.hash, now))
    if head is None:
        head = ChainHead(bot_id=bot_id)
        session.add(head)
    head.seq, head.hash, head.signed_at = link.seq, link.hash, now
    head.key_id = signed.key_id
    head.signature = base64.b64encode(signed.signature).decode()
    return link


async def chain_page(
    session: AsyncSession, bot_id: str, after_seq: int, limit: int
) -> list[dict[str, Any]]:
    """The bot's chained decisions after `after_seq`, in order, each with its hash."""
    rows = await repository.links_page(session, bot_id, after_seq, limit)
    votes: dict[str, list[LlmVote]] = {decision.id: [] for _, decision in rows}
    for vote in await subscriptions.votes_of(session, list(votes)):
        votes[vote.decision_id].append(vote)
    return [
        {**record_of(link, decision, votes[decision.id]), "hash": link.hash}
        for link, decision in rows
    ]


async def head_of(session: AsyncSession, bot_id: str) -> ChainHead | None:
    return await repository.head(session, bot_id)


async def purge_prompts(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime, retention: timedelta
) -> int:
    """Delete the prompt text of every decision older than the retention, one short
    transaction per batch; the votes keep each prompt's SHA-256."""
    purged = 0
    while True:
        async with session_scope(sessionmaker) as session:
            deleted = await repository.delete_prompts_before(session, now - retention, PURGE_BATCH)
        purged += deleted
        if deleted < PURGE_BATCH:
            return purged
