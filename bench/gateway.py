"""The gateway under load, against a bare FastAPI app on the same machine in the same run.

Sets up, from nothing: a fresh MariaDB database (dropped after), Redis db --redis-db
(flushed), and bulk-seeded rows: --principals renters with --subscriptions subscriptions
spread evenly over them, --bots bots (three voters each, as the API stores them), 50 more
renters without subscriptions for the storms, and --keys marketplace keys. Then it starts the API
as production runs it (`uvicorn --factory app.main:create_app --workers 2`, MariaDB through
asyncmy, Redis for rate limits, revocations and the broker, every setting at its default) and,
beside it with the same uvicorn flags, the bare app of bench/gateway_baseline.py. Every run
lasts --seconds:

  (1) baseline   GET /api/v1/subscriptions/{id} on the bare app
  (2) sub-get    GET /api/v1/subscriptions/{id}, marketplace key + the owner's principal,
                 ids spread over the whole data set
  (3) sub-list   GET /api/v1/subscriptions?limit=50, principals spread over the data set
  (4) bots-list  GET /api/v1/bots?limit=50 (a full page)
  (5) storms     bursts of 13 identical POST /api/v1/subscriptions sharing one
                 Idempotency-Key (ICP replicas), --storm-lanes bursts in flight, each lane
                 sending its next burst when the last copy of the previous one is answered

(1)-(4) are `wrk -t2 -c<connections>` with Lua scripts that cycle through the ids,
principals and headers; (5) is httpx. Each request, and each storm's 13 copies, carries one
of the marketplace's --keys keys in turn, under the default rate limits: each key's ceiling
(MARKETPLACE_RATE_LIMIT_PER_MINUTE, 60,000) and each renter's budget (RATE_LIMIT_PER_MINUTE,
600) on every key, so the API counts 1,000 renters' buckets as production does (a refusal is
a fault, counted as an error). A canister sends everything with its one key; the default of 4
keys only lifts the ceiling their requests share above what this machine serves (4 x 1,000
req/s). --keys 1000 is the stress case of many keys: each key's cache entry
(API_KEY_CACHE_TTL_S) then expires between two of its requests, so most requests read their
key again.

Rounds alternate the order (baseline first, then last) so that drift of a shared machine
weighs on both sides; each figure is the median over the rounds, and each service figure's
ratio is to the baseline's median. Storms check that each burst made exactly one row and that
its 13 answers are byte-identical 201s.

The last line printed is one JSON object with every figure, also written to
bench/results/gateway.json. The exit status is 1 when a target is missed.

Usage: python bench/gateway.py [--seconds 20] [--connections 64] [--rounds 2]
Needs wrk (Debian: apt-get install -y wrk), MariaDB (root@127.0.0.1:3306) and Redis
(127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This checkout's `app`, never an installed copy.
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from common import fresh_database  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from redis import Redis  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from versus_bare import BASELINE, Run, alternate, bare_and_api, lua_script, medians, wrk  # noqa: E402

from app.api_keys.schemas import Scope  # noqa: E402
from app.api_keys.service import create_api_key  # noqa: E402
from app.bots.strategy import Strategy  # noqa: E402
from app.core.db import create_engine, create_sessionmaker, new_id, session_scope  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from app.core.principals import encode_principal  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.models import Bot, BotMarketplaceRegistration, BotVersion, Subscription, User  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gateway.json"
STRATEGY = {
    "voters": [
        {"provider": "openai", "model": "gpt-4o-mini"},
        {"provider": "anthropic", "model": "claude-haiku-4-5"},
        {"provider": "gemini", "model": "gemini-2.5-flash"},
    ],
}
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT")
REPLICAS = 13
RATE_LIMIT_PER_MINUTE = Settings.model_fields["rate_limit_per_minute"].default
MARKETPLACE_RATE_LIMIT_PER_MINUTE = Settings.model_fields[
    "marketplace_rate_limit_per_minute"
].default
STORM_PRINCIPALS = 50
TARGETS = {
    "sub-get": "ratio >= 0.20, >= 1000 req/s, p99 < 100 ms, zero errors",
    "sub-list": "ratio >= 0.10, zero errors",
    "bots-list": "ratio >= 0.10, zero errors",
    "storms": "one row per burst, zero errors",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


# -- data ------------------------------------------------------------------------------------


@dataclass
class Seed:
    keys: list[str]  # marketplace keys
    # (subscription id, owner's principal) for every seeded subscription
    owned: list[tuple[str, str]]
    principals: list[str]
    storm_principals: list[str]
    bot_ids: list[str]


def principal_of(n: int) -> str:
    # Self-authenticating principals are 29 bytes, like a renter's.
    return encode_principal(hashlib.sha256(f"bench renter {n}".encode()).digest()[:29])


async def seed(
    database_url: str, principals: int, subscriptions: int, bots: int, keys: int
) -> Seed:
    """The rows the API would have written, inserted in bulk (multi-row INSERTs)."""
    engine = create_engine(database_url)
    async with session_scope(create_sessionmaker(engine)) as session:
        # Every key of one marketplace, whose renters the seeded users are.
        made = [
            await create_api_key(
                session, f"bench marketplace {n}", Scope.marketplace, create_marketplace=True
            )
            for n in range(keys)
        ]
        assert made[0].marketplace is not None
        marketplace_id = made[0].marketplace.id
    strategy = Strategy.model_validate(STRATEGY)
    developer_id = new_id()
    # Every row names every column: a multi-row INSERT takes its columns from the first row.
    users: list[dict[str, Any]] = [
        {
            "id": developer_id,
            "principal": None,
            "marketplace_id": None,
            "kind": "developer",
            "display_name": "bench",
        }
    ]
    renters = [principal_of(n) for n in range(principals + STORM_PRINCIPALS)]
    renter_ids = [new_id() for _ in renters]
    users += [
        {
            "id": i,
            "principal": p,
            "marketplace_id": marketplace_id,
            "kind": "renter",
            "display_name": None,
        }
        for i, p in zip(renter_ids, renters, strict=True)
    ]
    bot_rows, version_rows = [], []
    for b in range(bots):
        bot_id = new_id()
        bot_rows.append(
            {
                "id": bot_id,
                "owner_user_id": developer_id,
                "name": f"bench bot {b}",
                "description": "a bot of the gateway bench",
                "status": "active",
                "current_version": 1,
            }
        )
        version_rows.append(
            {
                "id": new_id(),
                "bot_id": bot_id,
                "version": 1,
                "strategy": strategy.model_dump(mode="json"),
                "config_hash": strategy.config_hash(),
            }
        )
    # Listed, as a bot a renter subscribes to (the storms) must be.
    listing_rows = [
        {
            "id": new_id(),
            "bot_id": bot["id"],
            "marketplace_id": marketplace_id,
            "title": bot["name"],
            "price": Decimal(0),
            "currency": "ICP",
            "billing_period": "month",
            "status": "active",
        }
        for bot in bot_rows
    ]
    sub_rows, owned = [], []
    for n in range(subscriptions):
        owner = n % principals
        bot = n % bots
        sub_id = new_id()
        sub_rows.append(
            {
                "id": sub_id,
                "user_id": renter_ids[owner],
                "bot_id": bot_rows[bot]["id"],
                "bot_version_id": version_rows[bot]["id"],
                "symbol": SYMBOLS[n % len(SYMBOLS)],
                "timeframe": "1h",
                "mode": "paper",
                "quote_amount": Decimal("100"),
                "risk": {},
                "status": "active",
            }
        )
        owned.append((sub_id, renters[owner]))
    async with engine.begin() as connection:
        for model, rows in (
            (User, users),
            (Bot, bot_rows),
            (BotVersion, version_rows),
            (BotMarketplaceRegistration, listing_rows),
            (Subscription, sub_rows),
        ):
            for start in range(0, len(rows), 2000):
                await connection.execute(insert(model), rows[start : start + 2000])
    await engine.dispose()
    return Seed(
        keys=[key.plaintext for key in made],
        owned=owned,
        principals=renters[:principals],
        storm_principals=renters[principals:],
        bot_ids=[b["id"] for b in bot_rows],
    )


async def count_subscriptions(database_url: str, principals: list[str]) -> int:
    engine = create_engine(database_url, pool=False)
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(Subscription)
            .join(User, User.id == Subscription.user_id)
            .where(User.principal.in_(principals))
        )
    await engine.dispose()
    return int(count or 0)


# -- storms ----------------------------------------------------------------------------------------


async def _storms(base: str, bench: Seed, seconds: int, lanes: int) -> tuple[dict[str, float], int]:
    latencies: list[float] = []
    errors = 0
    kinds: Counter[str] = Counter()
    bursts = 0
    numbers = iter(range(10**9))
    deadline = time.monotonic() + seconds
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them: a
    # request sent on a connection the server is closing fails with a ReadError, a race of
    # the client's, not an answer of the API.
    limits = httpx.Limits(
        max_connections=lanes * REPLICAS, max_keepalive_connections=None, keepalive_expiry=2.0
    )

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def copy(body: dict[str, str], headers: dict[str, str]) -> httpx.Response:
            started = time.perf_counter()
            response = await http.post("/api/v1/subscriptions", json=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            return response

        async def lane() -> None:
            nonlocal errors, bursts
            while time.monotonic() < deadline:
                n = next(numbers)
                body = {
                    "bot_id": bench.bot_ids[n % len(bench.bot_ids)],
                    "symbol": SYMBOLS[n % len(SYMBOLS)],
                    "timeframe": "1h",
                    "mode": "paper",
                    "quote_amount": "100",
                }
                headers = {
                    "X-API-Key": bench.keys[n % len(bench.keys)],
                    "X-Principal-ID": bench.storm_principals[n % len(bench.storm_principals)],
                    "Idempotency-Key": f"storm-{uuid.uuid4().hex}",
                }
                answers = await asyncio.gather(
                    *(copy(body, headers) for _ in range(REPLICAS)), return_exceptions=True
                )
                good = [
                    a for a in answers if isinstance(a, httpx.Response) and a.status_code == 201
                ]
                errors += REPLICAS - len(good)
                kinds.update(
                    f"{a.status_code} {a.text[:160]}" if isinstance(a, httpx.Response) else repr(a)
                    for a in answers
                    if not any(a is g for g in good)
                )
                # Every copy must carry the same bytes, or the canister gets no consensus.
                if good and len({a.content for a in good}) != 1:
                    errors += len(good)
                    kinds["201s with different bodies"] += len(good)
                bursts += 1

        started = time.monotonic()
        await asyncio.gather(*(lane() for _ in range(lanes)))
        elapsed = time.monotonic() - started
    figures = {
        "req_s": round(len(latencies) / elapsed, 1),
        "bursts_s": round(bursts / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "errors": errors,
    }
    if kinds:
        print(f"  storm errors: {dict(kinds)}", file=sys.stderr)
    return figures, bursts


def storms(base: str, bench: Seed, database_url: str, seconds: int, lanes: int) -> dict[str, float]:
    before = asyncio.run(count_subscriptions(database_url, bench.storm_principals))
    figures, bursts = asyncio.run(_storms(base, bench, seconds, lanes))
    made = asyncio.run(count_subscriptions(database_url, bench.storm_principals)) - before
    return {**figures, "bursts": bursts, "rows": made, "extra_rows": made - bursts}


# -- report ----------------------------------------------------------------------------------

RUNS = ("baseline", "sub-get", "sub-list", "bots-list", "storms")
LABELS = {
    "baseline": "(1) bare FastAPI GET /api/v1/subscriptions/{id}",
    "sub-get": "(2) GET /api/v1/subscriptions/{id}",
    "sub-list": "(3) GET /api/v1/subscriptions?limit=50",
    "bots-list": "(4) GET /api/v1/bots?limit=50",
    "storms": f"(5) storms of {REPLICAS} replicated POSTs",
}


def summarise(rounds: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    summary = medians(rounds)
    if storm_rounds := rounds.get("storms"):
        storm = summary["storms"]
        storm["bursts"] = sum(int(r["bursts"]) for r in storm_rounds)
        storm["extra_rows"] = sum(int(r["extra_rows"]) for r in storm_rounds)
        storm["bursts_s"] = round(statistics.median(r["bursts_s"] for r in storm_rounds), 1)
    if get := summary.get("sub-get"):
        get["met"] = (
            get["ratio"] >= 0.20
            and get["req_s"] >= 1000
            and get["p99_ms"] < 100
            and get["errors"] == 0
        )
    for name in ("sub-list", "bots-list"):
        if name in summary:
            summary[name]["met"] = summary[name]["ratio"] >= 0.10 and summary[name]["errors"] == 0
    if storm := summary.get("storms"):
        storm["met"] = storm["extra_rows"] == 0 and storm["errors"] == 0
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'':<50}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'ratio':>8}"
        f"{'CPU ms':>8}  target",
    ]
    for name in summary:
        f = summary[name]
        target = TARGETS.get(name, "")
        if target:
            target += " — met" if f["met"] else " — MISSED"
        lines.append(
            f"{LABELS[name]:<50}{f['req_s']:>9.0f}{f['p50_ms']:>9.2f}{f['p99_ms']:>9.2f}"
            f"{f['errors']:>8}{f['ratio']:>8.3f}{f['cpu_ms']:>8.2f}  {target}"
        )
    if storm := summary.get("storms"):
        lines.append(
            f"storms: {storm['bursts']} bursts ({storm['bursts_s']} per s), rows beyond one "
            f"per burst: {storm['extra_rows']}"
        )
    lines.append(
        "req/s per round: " + "; ".join(f"{n} {f['rounds_req_s']}" for n, f in summary.items())
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--principals", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--bots", type=int, default=50, help="a full page of the catalogue")
    parser.add_argument(
        "--keys",
        type=int,
        default=4,
        help="keys of the marketplace; together they may send keys x "
        "MARKETPLACE_RATE_LIMIT_PER_MINUTE / 60 "
        "req/s, beyond which the API refuses (429, an error here)",
    )
    parser.add_argument("--storm-lanes", type=int, default=4, help="bursts in flight")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--mariadb", default="mysql+asyncmy://root@127.0.0.1:3306/")
    parser.add_argument("--runs", default=",".join(RUNS), help="a subset, while iterating")
    args = parser.parse_args()
    runs = [name for name in RUNS if name in args.runs.split(",")]
    if "baseline" not in runs:
        raise SystemExit("--runs needs the baseline: every figure is a ratio to it")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    load_before = load_average()
    with (
        tempfile.TemporaryDirectory(prefix="botmarket-gateway-") as tmp,
        fresh_database(args.mariadb) as database_url,
    ):
        workdir = Path(tmp)
        migrate(database_url)
        started = time.monotonic()
        bench = asyncio.run(
            seed(database_url, args.principals, args.subscriptions, args.bots, args.keys)
        )
        seeded_s = time.monotonic() - started
        print(f"seeded in {seeded_s:.1f} s", file=sys.stderr)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "FERNET_KEYS": f"bench:{Fernet.generate_key().decode()}",
            "PYTHONPATH": str(ROOT),
        }
        env.pop("RATE_LIMIT_PER_MINUTE", None)  # the default's budget, as production has it
        shuffled = random.Random(1).sample(bench.owned, len(bench.owned))
        scripts = {
            "baseline": lua_script(
                workdir / "baseline.lua",
                bench.keys,
                [(f"/api/v1/subscriptions/{s}", p) for s, p in shuffled],
            ),
            "sub-get": lua_script(
                workdir / "sub-get.lua",
                bench.keys,
                [(f"/api/v1/subscriptions/{s}", p) for s, p in shuffled],
            ),
            "sub-list": lua_script(
                workdir / "sub-list.lua",
                bench.keys,
                [("/api/v1/subscriptions?limit=50", p) for p in bench.principals],
            ),
            "bots-list": lua_script(
                workdir / "bots-list.lua", bench.keys, [("/api/v1/bots?limit=50", "")]
            ),
        }
        with bare_and_api(env, workdir) as (bare, api):

            def run(name: str) -> Run:
                server = bare if name == BASELINE else api
                if name == "storms":
                    return server, lambda seconds: storms(
                        server.url, bench, database_url, seconds, args.storm_lanes
                    )
                return server, lambda seconds: wrk(
                    server.url, scripts[name], seconds, args.connections
                )

            rounds = alternate(
                {name: run(name) for name in runs},
                args.rounds,
                args.seconds,
                warm=[name for name in runs if name != "storms"],
            )
    redis.flushdb()
    summary = summarise(rounds)
    print(
        f"\n2 uvicorn processes each (--workers 2, uvloop + httptools), {os.cpu_count()} CPUs "
        f"shared with wrk, MariaDB and Redis; wrk -t2 -c{args.connections} -d{args.seconds}s; "
        f"{args.rounds} rounds, medians\n{args.principals} principals, {args.subscriptions} "
        f"subscriptions, {args.bots} bots, {args.keys} marketplace keys (rate limits "
        f"{MARKETPLACE_RATE_LIMIT_PER_MINUTE} a minute per key, {RATE_LIMIT_PER_MINUTE} per "
        "renter); load average before / after: "
        f"{load_before} / "
        f"{load_average()}\n"
    )
    print(table(summary))
    result = {
        "bench": "gateway",
        "machine_cpus": os.cpu_count(),
        "processes": 2,
        "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "principals": args.principals,
        "subscriptions": args.subscriptions,
        "bots": args.bots,
        "keys": args.keys,
        "rate_limit_per_minute": RATE_LIMIT_PER_MINUTE,
        "storm_lanes": args.storm_lanes,
        "seed_s": round(seeded_s, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "targets": TARGETS,
        "results": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(result, sort_keys=True)
    RESULTS.write_text(line + "\n")
    print(line)
    if missed := [name for name, figures in summary.items() if figures.get("met") is False]:
        raise SystemExit(f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
