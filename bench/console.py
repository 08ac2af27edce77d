"""The console's pages, rendered server-side at the issue's scale: 1,000 bots, 10,000
subscriptions.

Seeded like bench/gateway.py (its `seed`: 1,000 bots of one developer, 10,000 active
subscriptions of 1,000 renters), plus, in bulk, --decisions-per-bot hourly decisions of every
bot with its three votes (today's and the 30 days' LLM spend the bots list sums), and for one
bot --backtests succeeded backtests started by the developer's key, each with a 30-day hourly
equity curve (the bot page's and a backtest page's charts). A developer key owning the 1,000
bots and an admin key sign in through the sign-in form, as a browser does.

The app is driven in process (its lifespan, middlewares, MariaDB through asyncmy, Redis), one
request at a time through httpx's ASGI transport: no server, no network, so a request's time is
the server's. Each page is rendered --renders times after a warm-up; the table gives p50 and
p99 in ms. The last line printed is one JSON object with every figure, also written to
bench/results/console.json. The exit status is 1 when a page's p99 is 300 ms or more.

Usage: python bench/console.py [--renders 200]
Needs MariaDB (root@127.0.0.1:3306) and Redis (127.0.0.1:6379); makes and drops a database of
its own and flushes Redis db --redis-db.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
# This checkout's `app`, never an installed copy.
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvloop  # noqa: E402
from common import fresh_database  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from gateway import STRATEGY, percentile, seed  # noqa: E402
from redis import Redis  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from app.api_keys.schemas import Scope  # noqa: E402
from app.api_keys.service import create_api_key  # noqa: E402
from app.core.db import create_engine, create_sessionmaker, new_id, session_scope, utcnow  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.main import create_app  # noqa: E402
from app.models import Backtest, BotVersion, Decision, LlmVote, User  # noqa: E402
from tests.console.conftest import sign_in  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "console.json"
TARGET_MS = 300.0
WARM_UP = 5
BOTS, SUBSCRIPTIONS, RENTERS = 1000, 10_000, 1000
EQUITY_HOURS = 30 * 24


async def seed_console(database_url: str, decisions_per_bot: int, backtests: int) -> dict[str, Any]:
    """The gateway bench's bots and subscriptions, decisions with votes, one bot's backtests,
    and the developer's and an admin's keys."""
    bench = await seed(database_url, RENTERS, SUBSCRIPTIONS, BOTS, keys=1)
    engine = create_engine(database_url)
    async with session_scope(create_sessionmaker(engine)) as session:
        developer_id = await session.scalar(select(User.id).where(User.kind == "developer"))
        developer = await create_api_key(session, "bench developer", Scope.developer, developer_id)
        admin = await create_api_key(session, "bench admin", Scope.admin)
        versions = {
            bot_id: version_id
            for bot_id, version_id in await session.execute(
                select(BotVersion.bot_id, BotVersion.id)
            )
        }
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    decisions, votes = [], []
    for bot_id in bench.bot_ids:
        for h in range(decisions_per_bot):
            decision_id = new_id()
            decisions.append(
                {
                    "id": decision_id,
                    "bot_version_id": versions[bot_id],
                    "symbol": "BTCUSDT",
                    "timeframe": "1h",
                    "candle_open_at": hour - timedelta(hours=h),
                    "indicators": {"rsi": 48.5},
                    "indicator_score": Decimal("0.4"),
                    "combined_score": Decimal("0.55"),
                    "action": "BUY" if h % 3 == 0 else "HOLD",
                    "rule_version": "bench",
                    "rule_params": {},
                    "created_at": hour - timedelta(hours=h),
                }
            )
            votes += [
                {
                    "id": new_id(),
                    "decision_id": decision_id,
                    "seat": seat,
                    "provider": voter["provider"],
                    "model": voter["model"],
                    "weight": Decimal(1),
                    "action": "BUY",
                    "confidence": Decimal("0.7"),
                    "reasoning": "the trend is up and the RSI leaves room",
                    "cited_indicators": ["rsi"],
                    "cost_usd": Decimal("0.0012"),
                }
                for seat, voter in enumerate(STRATEGY["voters"])
            ]
    bot_id = bench.bot_ids[0]
    start = hour - timedelta(hours=EQUITY_HOURS)
    equity = [
        [(start + timedelta(hours=h)).isoformat(), str(Decimal(1000) + Decimal(h % 97) / 4)]
        for h in range(EQUITY_HOURS)
    ]
    runs = [
        {
            "id": new_id(),
            "bot_id": bot_id,
            "bot_version_id": versions[bot_id],
            "bot_version": 1,
            "owner_api_key_id": developer.row.id,
            "owner_user_id": None,
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "start_at": start,
            "end_at": hour,
            "quote_amount": Decimal(1000),
            "llm": "recorded",
            "status": "succeeded",
            "candles_done": EQUITY_HOURS,
            "candles_total": EQUITY_HOURS,
            "result": {"equity": equity, "metrics": {"return_pct": "2.1"}, "trades": []},
            "started_at": start,
            "finished_at": hour - timedelta(minutes=n),
        }
        for n in range(backtests)
    ]
    async with engine.begin() as connection:
        for model, rows in ((Decision, decisions), (LlmVote, votes), (Backtest, runs)):
            for first in range(0, len(rows), 2000):
                await connection.execute(insert(model), rows[first : first + 2000])
    await engine.dispose()
    return {
        "developer_key": developer.plaintext,
        "admin_key": admin.plaintext,
        "bot_id": bot_id,
        "backtests": [run["id"] for run in runs],
    }


def pages(seeded: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each measured page: (who is signed in, path)."""
    bot, runs = seeded["bot_id"], seeded["backtests"]
    return {
        "my bots": ("developer", "/console/bots"),
        "every bot (admin)": ("admin", "/console/bots"),
        "bot page": ("developer", f"/console/bots/{bot}"),
        "decisions fragment": ("developer", f"/console/bots/{bot}/decisions"),
        "backtest form": ("developer", f"/console/bots/{bot}/backtests/new"),
        "backtest page": ("developer", f"/console/backtests/{runs[0]}"),
        "compare": ("developer", f"/console/backtests/compare?a={runs[0]}&b={runs[1]}"),
        "admin health": ("admin", "/console/admin/health"),
        "admin keys": ("admin", "/console/admin/keys"),
        "admin marketplaces": ("admin", "/console/admin/marketplaces"),
    }


async def measure(
    settings: Settings, seeded: dict[str, Any], renders: int, log: TextIO
) -> dict[str, dict[str, Any]]:
    app = create_app(settings)
    # Written somewhere, as a server's would be, but not onto this script's output.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log)
    results: dict[str, dict[str, Any]] = {}
    async with app.router.lifespan_context(app):
        clients = {
            who: httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bench")
            for who in ("developer", "admin")
        }
        for who, client in clients.items():
            signed = await sign_in(client, seeded[f"{who}_key"])
            assert signed.status_code == 303, signed.text[:500]
        for name, (who, path) in pages(seeded).items():
            client = clients[who]
            for _ in range(WARM_UP):
                await client.get(path)
            times, sizes = [], set()
            for _ in range(renders):
                began = time.perf_counter()
                answer = await client.get(path)
                times.append(1000 * (time.perf_counter() - began))
                assert answer.status_code == 200, f"{name}: {answer.status_code}"
                sizes.add(len(answer.content))
            results[name] = {
                "path": path,
                "p50_ms": round(percentile(times, 0.50), 2),
                "p99_ms": round(percentile(times, 0.99), 2),
                "bytes": max(sizes),
            }
        for client in clients.values():
            await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--renders", type=int, default=200, help="renders of each page")
    parser.add_argument("--decisions-per-bot", type=int, default=168, help="a week, hourly")
    parser.add_argument("--backtests", type=int, default=20, help="of the measured bot")
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--mariadb", default="mysql+asyncmy://root@127.0.0.1:3306/")
    args = parser.parse_args()
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    Redis.from_url(redis_url).flushdb()
    with fresh_database(args.mariadb) as database_url, open(os.devnull, "w") as log:
        migrate(database_url)
        seeded = asyncio.run(seed_console(database_url, args.decisions_per_bot, args.backtests))
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            fernet_keys=f"bench:{Fernet.generate_key().decode()}",
            # Plain http: the session cookie is not Secure there.
            environment="development",
            rate_limit_per_minute=10**9,
        )
        results = uvloop.run(measure(settings, seeded, args.renders, log))
    missed = [name for name, r in results.items() if r["p99_ms"] >= TARGET_MS]
    print(f"{'page':22} {'p50 ms':>8} {'p99 ms':>8} {'KiB':>6}")
    for name, r in results.items():
        print(f"{name:22} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['bytes'] / 1024:6.1f}")
    summary = {
        "bench": "console",
        "bots": BOTS,
        "subscriptions": SUBSCRIPTIONS,
        "decisions_per_bot": args.decisions_per_bot,
        "renders": args.renders,
        "target_p99_ms": TARGET_MS,
        "missed": missed,
        "load_average": " / ".join(f"{n:.2f}" for n in os.getloadavg()),
        "results": results,
    }
    line = json.dumps(summary, sort_keys=True)
    RESULTS.write_text(line + "\n")
    print(line)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
