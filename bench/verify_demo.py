"""`botmarket verify` on a demo bot with a day of decisions, then on a tampered copy.

From nothing, in a temporary directory: a SQLite database (migrated), the sandbox exchange
(`botmarket sandbox`, a subprocess), the fake OpenAI/Anthropic/Gemini servers of tests/fakes
(every vote BUY 0.8) and the API (`botmarket serve`, a subprocess). The demo's strategy (a
low threshold) with three voters decides every --timeframe candle of the day that ended at
the last UTC midnight, through the live code (app/trading/decide.py), each decision chained
as it is stored. Then `botmarket verify` runs as an operator would, and again after one vote
of the middle decision is edited in the database (the hashes left alone: the verifier must
name that seq). Prints both runs' output, their wall time and the seq named.

Usage: python bench/verify_demo.py [--timeframe 1m] [--decisions 1440]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This checkout's `app` and `tests` (the fakes), never an installed copy.
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from common import free_port  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import select  # noqa: E402

from app.api_keys.schemas import Scope  # noqa: E402
from app.api_keys.service import create_api_key  # noqa: E402
from app.bots.strategy import Ensemble, Strategy, Voter  # noqa: E402
from app.core.db import create_engine, create_sessionmaker, session_scope  # noqa: E402
from app.core.locks import NamedLocks  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.core.signing import generate_seed  # noqa: E402
from app.integrations.binance.clients import BinanceClients  # noqa: E402
from app.integrations.binance.governor import InProcessGovernor  # noqa: E402
from app.integrations.llm.registry import VoterPool  # noqa: E402
from app.models import Bot, BotVersion, ChainLink, LlmVote, User  # noqa: E402
from app.trading.decide import DecisionMaker  # noqa: E402
from app.trading.market_data import MarketData, MemoryCandleCache, interval_ms  # noqa: E402
from tests.fakes import serve_fakes  # noqa: E402

PANEL = [
    Voter(provider="openai", model="gpt-4o-mini"),
    Voter(provider="anthropic", model="claude-haiku-4-5"),
    Voter(provider="gemini", model="gemini-2.5-flash"),
]


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=log.parent,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(ready, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not start: {log.read_text()}")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


async def make_chain(settings: Settings, sandbox_url: str, timeframe: str, count: int) -> str:
    """A developer's bot deciding `count` candles up to the last midnight; its id."""
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    strategy = Strategy(voters=PANEL, ensemble=Ensemble(threshold=Decimal("0.02")))
    async with session_scope(sessionmaker) as session:
        owner = User(kind="developer", display_name="demo developer")
        session.add(owner)
        await session.flush()
        bot = Bot(owner_user_id=owner.id, name="Demo", description="", status="active")
        bot.current_version = 1
        session.add(bot)
        await session.flush()
        version = BotVersion(
            bot_id=bot.id,
            version=1,
            strategy=strategy.model_dump(mode="json"),
            config_hash=strategy.config_hash(),
        )
        session.add(version)
    clients = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox_url, rules_ttl_s=300, idle_s=300
    )
    voters = VoterPool(settings)
    market = MarketData(clients, MemoryCandleCache(), NamedLocks(None))
    maker = DecisionMaker(sessionmaker, market, voters, settings)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(milliseconds=interval_ms(timeframe))
    started_at = time.monotonic()
    for n in range(count):
        # `now` just after candle n closed: the decision is on candle n.
        await maker.decide(version.id, "BTCUSDT", timeframe, now=midnight - (count - n - 1) * step)
        if n % 100 == 99:
            print(f"  {n + 1}/{count} decisions made", file=sys.stderr)
    print(f"made {count} decisions in {time.monotonic() - started_at:.1f} s", file=sys.stderr)
    await voters.aclose()
    await clients.close()
    await engine.dispose()
    return bot.id


async def new_key(settings: Settings) -> str:
    engine = create_engine(settings.database_url, pool=False)
    async with session_scope(create_sessionmaker(engine)) as session:
        created = await create_api_key(session, "verifier", Scope.developer)
    await engine.dispose()
    return created.plaintext


async def edit_one_vote(settings: Settings, bot_id: str, seq: int) -> None:
    engine = create_engine(settings.database_url, pool=False)
    async with session_scope(create_sessionmaker(engine)) as session:
        link = await session.scalar(
            select(ChainLink).where(ChainLink.bot_id == bot_id, ChainLink.seq == seq)
        )
        assert link is not None
        vote = await session.scalar(
            select(LlmVote).where(LlmVote.decision_id == link.decision_id, LlmVote.seat == 0)
        )
        assert vote is not None
        vote.action = "SELL" if vote.action == "BUY" else "BUY"
    await engine.dispose()


def verify(api: str, sandbox: str, bot_id: str, key: str) -> int:
    command = [
        "botmarket", "verify", "--url", api, "--bot", bot_id, "--klines-url", sandbox,
    ]  # fmt: skip
    print("$ BOTMARKET_API_KEY=... " + " ".join(command))
    started_at = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *command[1:]],
        env={**os.environ, "PYTHONPATH": str(ROOT), "BOTMARKET_API_KEY": key},
        capture_output=True,
        text=True,
        check=False,
    )
    print(done.stdout, end="")
    if not done.stdout:  # it could not verify: why is on stderr, after the progress bar
        print(done.stderr.strip().splitlines()[-1])
    print(f"(exit {done.returncode}, wall time {time.monotonic() - started_at:.1f} s)\n")
    return done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--timeframe", default="1m")
    parser.add_argument("--decisions", type=int, default=1440)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve_fakes() as fakes:
        workdir = Path(tmp)
        url = f"sqlite+aiosqlite:///{workdir / 'demo.db'}"
        migrate(url)
        env = {
            "DATABASE_URL": url,
            "FERNET_KEYS": f"demo:{Fernet.generate_key().decode()}",
            "SIGNING_KEYS": f"demo:{generate_seed()}",
        }
        sandbox_port, api_port = free_port(), free_port()
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        api = f"http://127.0.0.1:{api_port}"
        settings = Settings(
            database_url=url,
            fernet_keys=env["FERNET_KEYS"],
            signing_keys=env["SIGNING_KEYS"],
            **fakes.settings_overrides(),
        )
        with started(
            ["sandbox", "--port", str(sandbox_port)],
            {},
            workdir / "sandbox.log",
            f"{sandbox}/api/v3/ping",
        ):
            bot_id = asyncio.run(make_chain(settings, sandbox, args.timeframe, args.decisions))
            key = asyncio.run(new_key(settings))
            # Making the chain used this minute's request weight; a verifier is another
            # client (elsewhere: another IP), with a budget of its own.
            reset = {"weight_per_minute": 6000, "violations_before_ban": 3, "ban_seconds": 120}
            httpx.post(f"{sandbox}/sandbox/config", json={**reset, "reset_usage": True})
            serve = ["serve", "--host", "127.0.0.1", "--port", str(api_port)]
            with started(serve, env, workdir / "api.log", f"{api}/health/ready"):
                clean = verify(api, sandbox, bot_id, key)
                middle = args.decisions // 2
                asyncio.run(edit_one_vote(settings, bot_id, middle))
                print(f"edited seat 0's vote of seq {middle} in the database")
                tampered = verify(api, sandbox, bot_id, key)
    sys.exit(0 if clean == 0 and tampered == 1 else 1)


if __name__ == "__main__":
    main()
