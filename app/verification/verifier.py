"""`botmarket verify`: a bot's decision chain checked by anyone, from the public endpoints
(any API key) and the exchange's public klines alone, with no access to our database.

In seq order, each record's seq, prev_hash link and hash; its candle window (consecutive,
ending at the decided candle, closed at decision time) against the exchange's klines and its
digest; its indicators recomputed with TA-Lib by the live code; its action and score
recomputed from its votes by the pure ensemble rule of its version. Then the head's signature
against /signing-keys, that the chain ends at the signed head, that a head recorded earlier
(`head_hash`) is still in it, and the track record's decision figures recomputed from the
chain. The first failing record stops the run and is named (docs/verification.md).
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.trading.candles import Candle
from app.trading.market_data import interval_ms
from app.verification import recompute
from app.verification.canonical import GENESIS_HASH, chain_hash, head_message

PAGE_SIZE = 200  # the most /decisions serves at once
KLINES_LIMIT = 1000  # the most Binance's /api/v3/klines serves at once
TRACK_RECORD_COST_DAYS = 30  # the track record's llm_cost_per_day window (app/track_records)
_STABLE_READS = 3

Progress = Callable[[int, int], None]


class VerifyError(Exception):
    """The check could not be made (an endpoint unreachable or refusing): not a verdict."""


@dataclass(frozen=True)
class Failure:
    seq: int | None  # None: not one record's (the recorded head, the track record)
    reason: str


@dataclass
class Report:
    bot_id: str
    from_seq: int
    checked: int = 0
    failure: Failure | None = None
    checks: list[str] = field(default_factory=list)  # what held, for the summary

    @property
    def ok(self) -> bool:
        return self.failure is None

    def summary(self) -> list[str]:
        last = self.from_seq + self.checked - 1
        span = f"seq {self.from_seq}-{last}" if self.checked else "none"
        lines = [f"bot {self.bot_id}: {self.checked} decisions checked ({span})"]
        lines += [f"  ok  {check}" for check in self.checks]
        if self.failure is None:
            lines.append("VERIFIED: every check holds")
        elif self.failure.seq is None:
            lines.append(f"FAILED: {self.failure.reason}")
        else:
            lines.append(f"FAILED at seq {self.failure.seq}: {self.failure.reason}")
        return lines


async def _get(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    try:
        response = await http.get(path, params=params)
    except httpx.HTTPError as exc:
        raise VerifyError(f"GET {http.base_url.join(path)}: {exc!r}") from exc
    if response.status_code != 200:
        raise VerifyError(f"GET {path}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


class Klines:
    """The exchange's public klines, each candle fetched once per run: a request reads up to
    KLINES_LIMIT candles ahead (consecutive decisions' windows overlap all but one candle),
    but only candles closed by `until` (the head's signing time: no window can reach later)."""

    def __init__(self, http: httpx.AsyncClient, until: datetime | None) -> None:
        self._http = http
        self._until_ms = int(until.timestamp() * 1000) if until else None
        self._rows: dict[tuple[str, str], dict[int, list[Any]]] = defaultdict(dict)

    async def window(self, symbol: str, interval: str, opens: list[datetime]) -> list[Candle] | str:
        rows = self._rows[(symbol, interval)]
        step = interval_ms(interval)
        wanted = [int(t.timestamp() * 1000) for t in opens]
        missing = [t for t in wanted if t not in rows]
        while missing:
            start = missing[0]
            end = start + KLINES_LIMIT * step - 1
            if self._until_ms is not None:
                end = min(end, max(wanted[-1] + step, self._until_ms // step * step) - 1)
            fetched = await _get(
                self._http,
                "/api/v3/klines",
                symbol=symbol,
                interval=interval,
                startTime=start,
                endTime=end,
                limit=KLINES_LIMIT,
            )
            rows.update({int(row[0]): row for row in fetched})
            missing = [t for t in missing if t > end and t not in rows]
        absent = [t for t in wanted if t not in rows]
        if absent:
            return f"the exchange has no {interval} kline of {symbol} opening at {absent[0]} ms"
        return [Candle.from_kline(rows[t]) for t in wanted]


def head_signature_problem(head: dict[str, Any], keys: list[dict[str, Any]]) -> str | None:
    """Why the head's Ed25519 signature does not verify under its key, or None."""
    if head["seq"] == 0:
        return None if head["hash"] == GENESIS_HASH else "an empty chain's head is not 64 zeros"
    key = next((k for k in keys if k["key_id"] == head["key_id"]), None)
    if key is None:
        return f"the head is signed by key {head['key_id']!r}, which /signing-keys does not list"
    message = head_message(
        head["bot_id"], head["seq"], head["hash"], recompute.parse_time(head["signed_at"])
    )
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
        public.verify(base64.b64decode(head["signature"]), message)
    except (InvalidSignature, ValueError, binascii.Error):
        return f"the head's signature does not verify under key {head['key_id']!r}"
    return None


async def _head_and_track_record(
    api: httpx.AsyncClient, bot_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The signed head and a track record computed from exactly the chain up to it: the head
    read before and after the track record, until no decision came in between."""
    for _ in range(_STABLE_READS):
        head = await _get(api, f"/api/v1/bots/{bot_id}/chain")
        track_record = await _get(api, f"/api/v1/bots/{bot_id}/track-record")
        again = await _get(api, f"/api/v1/bots/{bot_id}/chain")
        if again["seq"] == head["seq"]:
            return head, track_record
    raise VerifyError("the chain kept growing while its track record was read: try again")


async def _records(
    api: httpx.AsyncClient, bot_id: str, from_seq: int, head_seq: int
) -> AsyncIterator[dict[str, Any]]:
    """The served records from `from_seq` to the head, page by page."""
    after: int | None = from_seq - 1
    while after is not None and after < head_seq:
        page = await _get(api, f"/api/v1/bots/{bot_id}/decisions", after=after, limit=PAGE_SIZE)
        for record in page["items"]:
            if record["seq"] > head_seq:
                return
            yield record
        after = page["next_after"]


@dataclass
class _Tally:
    """What the track record's decision figures are recomputed from."""

    actions: Counter[str] = field(default_factory=Counter)
    cost_by_day: dict[date, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def add(self, record: dict[str, Any]) -> None:
        self.actions[record["action"]] += 1
        day = recompute.parse_time(record["candle_open_at"]).date()
        self.cost_by_day[day] += sum((Decimal(v["cost_usd"]) for v in record["votes"]), Decimal(0))

    def track_record_problem(self, track_record: dict[str, Any]) -> str | None:
        counted = {action: track_record["decisions"][action] for action in ("BUY", "SELL", "HOLD")}
        chained = {action: self.actions[action] for action in counted}
        if counted != chained:
            return f"the track record counts decisions {counted}, the chain holds {chained}"
        first = max(self.cost_by_day, default=date.min) - timedelta(TRACK_RECORD_COST_DAYS - 1)
        chained_costs = [(d, c) for d, c in sorted(self.cost_by_day.items()) if d >= first]
        published = [
            (date.fromisoformat(day["day"]), Decimal(str(day["cost_usd"])))
            for day in track_record["llm_cost_per_day"]
        ]
        if published != chained_costs:
            return "the track record's daily LLM cost is not the sum of the chain's vote costs"
        return None


class _Walk:
    """The records' checks, in seq order; remembers what the next record must link to."""

    def __init__(self, bot_id: str, from_seq: int, klines: Klines) -> None:
        self.bot_id = bot_id
        self.expected = from_seq
        self.previous: str | None = GENESIS_HASH if from_seq == 1 else None
        self.klines = klines
        self.rule_versions: set[str] = set()
        self.tally = _Tally()

    def _link_problem(self, record: dict[str, Any]) -> str | None:
        if record["seq"] != self.expected:
            return f"seq {self.expected} is missing: the chain goes on with seq {record['seq']}"
        if record["bot_id"] != self.bot_id:
            return f"it belongs to bot {record['bot_id']}"
        if self.previous is not None and record["prev_hash"] != self.previous:
            return f"its prev_hash is not the hash of seq {self.expected - 1}"
        if chain_hash(record["prev_hash"], record) != record["hash"]:
            return "its hash is not the SHA-256 of its prev_hash and its canonical record"
        return None

    async def problem(self, record: dict[str, Any]) -> str | None:
        """Why the record does not hold, or None; the first check to fail says."""
        if reason := self._link_problem(record):
            return reason
        step = timedelta(milliseconds=interval_ms(record["timeframe"]))
        opens = recompute.window_opens(record, step)
        if isinstance(opens, str):
            return opens
        candles = await self.klines.window(record["symbol"], record["timeframe"], opens)
        if isinstance(candles, str):
            return candles
        return (
            recompute.candles_mismatch(record, candles)
            or recompute.indicators_mismatch(record, candles)
            or recompute.ensemble_mismatch(record)
        )

    async def check(self, record: dict[str, Any]) -> str | None:
        try:
            reason = await self.problem(record)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            reason = f"the record is malformed: {exc!r}"
        if reason is None:
            self.rule_versions.add(record["rule_version"])
            self.tally.add(record)
            self.previous = record["hash"]
            self.expected += 1
        return reason


async def verify(
    api: httpx.AsyncClient,
    exchange: httpx.AsyncClient,
    bot_id: str,
    from_seq: int = 1,
    head_hash: str | None = None,
    progress: Progress | None = None,
) -> Report:
    """Check the bot's chain from `from_seq` to its signed head. `api` is based at the
    service's URL and carries an API key; `exchange` at a Binance-compatible REST API."""
    keys = (await _get(api, "/api/v1/signing-keys"))["keys"]
    head, track_record = await _head_and_track_record(api, bot_id)
    report = Report(bot_id, from_seq)
    if from_seq > max(1, head["seq"]):
        report.failure = Failure(
            None, f"the chain has no seq {from_seq}: its head is seq {head['seq']}"
        )
        return report
    if reason := head_signature_problem(head, keys):
        report.failure = Failure(head["seq"], reason)
        return report
    signed_at = recompute.parse_time(head["signed_at"]) if head["signed_at"] else None
    walk = _Walk(bot_id, from_seq, Klines(exchange, signed_at))
    total = max(0, head["seq"] - from_seq + 1)
    found_head = head_hash is None or head_hash == head["hash"]
    async for record in _records(api, bot_id, from_seq, head["seq"]):
        if reason := await walk.check(record):
            report.failure = Failure(walk.expected, reason)
            return report
        report.checked += 1
        found_head = found_head or record["hash"] == head_hash
        if progress:
            progress(report.checked, total)
    report.failure = _ending_problem(walk, head, head_hash, found_head)
    if report.failure is None and from_seq == 1:
        if reason := walk.tally.track_record_problem(track_record):
            report.failure = Failure(None, reason)
    report.checks = _what_held(report, walk, head, head_hash)
    return report


def _ending_problem(
    walk: _Walk, head: dict[str, Any], head_hash: str | None, found_head: bool
) -> Failure | None:
    last = walk.expected - 1
    if last < head["seq"]:
        return Failure(
            walk.expected, f"the chain ends at seq {last}, its signed head is seq {head['seq']}"
        )
    if head["seq"] and walk.previous != head["hash"]:
        return Failure(head["seq"], "its hash is not the signed head's")
    if not found_head:
        return Failure(
            None,
            f"the recorded head {head_hash} is not in the chain: the chain was rewritten "
            "since it was recorded (or the head is another bot's)",
        )
    return None


def _what_held(
    report: Report, walk: _Walk, head: dict[str, Any], head_hash: str | None
) -> list[str]:
    if report.failure is not None or not report.checked:
        return []
    link = (
        "from genesis"
        if report.from_seq == 1
        else f"seq {report.from_seq}'s prev_hash taken as given"
    )
    held = [
        f"hashes and prev_hash links ({link})",
        f"head signature (seq {head['seq']}, key {head['key_id']})",
        "candle windows: consecutive, closed at decision time, digest of the exchange's klines",
        f"indicators recomputed with TA-Lib (readings within {recompute.READING_TOLERANCE}, "
        f"score within {recompute.SCORE_TOLERANCE})",
        f"action and score recomputed from the votes ({', '.join(sorted(walk.rule_versions))})",
    ]
    if head_hash:
        held.append(f"recorded head {head_hash[:16]}... is in the chain")
    if report.from_seq == 1:
        held.append(
            "track record: decisions by action and daily LLM cost recomputed from the chain"
        )
    return held
