"""The CPU one request costs the API, measured in process: the steady figure to profile.

bench/gateway.py measures the API as production runs it, with wrk and MariaDB on the same two
cores; its req/s move with whatever else the machine runs. This script drives the ASGI app
itself (its lifespan, middlewares, dependencies, MariaDB through asyncmy, Redis), no server
and no HTTP client: --concurrency requests in flight on one event loop (uvloop, as uvicorn
runs it), --requests of them after a warm-up, and reports the process's CPU time per request
and how often the garbage collector ran. Seeded like bench/gateway.py (its `seed`), in a fresh
MariaDB database dropped after; Redis db --redis-db is flushed. Unlike bench/gateway.py, one
marketplace key sends every request and the rate limit is out of reach: the figure is the
request path's own cost, steady from commit to commit, not that of many keys' cache misses.

  get    GET /api/v1/subscriptions/{id}, marketplace key + the owner's principal
  list   GET /api/v1/subscriptions?limit=50 (a renter's 10 rows)
  bots   GET /api/v1/bots?limit=50 (a full page of 50)

To see where the time goes, run it under a sampling profiler:
  .venv/bin/py-spy record --format raw -o prof.txt -- .venv/bin/python bench/gateway_cpu.py

The last line printed is one JSON object with every figure, also written to
bench/results/gateway_cpu.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
# This checkout's `app`, never an installed copy.
sys.path.insert(0, str(ROOT))

import uvloop  # noqa: E402
from common import fresh_database  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from gateway import Seed, seed  # noqa: E402
from redis import Redis  # noqa: E402
from starlette.types import ASGIApp, Message, Scope  # noqa: E402

from app.core.migrations import migrate  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.main import create_app  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gateway_cpu.json"
WARM_UP = 500
PATHS = {
    "get": lambda sub_id: ("/api/v1/subscriptions/" + sub_id, b""),
    "list": lambda _: ("/api/v1/subscriptions", b"limit=50"),
    "bots": lambda _: ("/api/v1/bots", b"limit=50"),
}


def request_scope(path: str, query: bytes, key: str, principal: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"x-api-key", key.encode()),
            (b"x-principal-id", principal.encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def request(app: ASGIApp, scope: Scope) -> int:
    answered: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        answered.append(message)

    await app(scope, receive, send)
    return int(answered[0]["status"])


async def measure(
    settings: Settings, bench: Seed, kind: str, count: int, concurrency: int, log: TextIO
) -> dict[str, Any]:
    app = create_app(settings)
    # Written somewhere, as a server's would be, but not onto this script's output.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log)
    owned = random.Random(1).sample(bench.owned, len(bench.owned))
    scopes = [
        request_scope(*PATHS[kind](sub_id), bench.keys[0], principal) for sub_id, principal in owned
    ]
    statuses: Counter[int] = Counter()

    async def lane(start: int, stop: int) -> None:
        for n in range(start, stop, concurrency):
            statuses[await request(app, scopes[n % len(scopes)])] += 1

    collections: Counter[int] = Counter()

    def count_collections(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[info["generation"]] += 1

    async with app.router.lifespan_context(app):
        await asyncio.gather(*(lane(k, WARM_UP) for k in range(concurrency)))
        statuses.clear()
        gc.callbacks.append(count_collections)
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(lane(k, count) for k in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        gc.callbacks.remove(count_collections)
    return {
        "cpu_ms": round(1000 * cpu / count, 3),
        "wall_ms": round(1000 * wall / count, 3),
        "statuses": dict(statuses),
        "gc_collections": {f"gen{g}": collections[g] for g in range(3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paths", default=",".join(PATHS), help="a subset of get,list,bots")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32, help="as wrk's 64 on 2 processes")
    parser.add_argument("--redis-db", type=int, default=10)
    parser.add_argument("--mariadb", default="mysql+asyncmy://root@127.0.0.1:3306/")
    args = parser.parse_args()
    kinds = args.paths.split(",")
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    Redis.from_url(redis_url).flushdb()
    with fresh_database(args.mariadb) as database_url, open(os.devnull, "w") as log:
        migrate(database_url)
        bench = asyncio.run(seed(database_url, 1000, 10_000, 50, keys=1))
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            fernet_keys=f"bench:{Fernet.generate_key().decode()}",
            # Out of reach: the limiter runs on every request, its refusals do not.
            rate_limit_per_minute=10**9,
        )
        results = {
            kind: uvloop.run(measure(settings, bench, kind, args.requests, args.concurrency, log))
            for kind in kinds
        }
    print(f"{'':6} {'CPU ms':>8} {'wall ms':>8}  statuses, garbage collections")
    for kind, result in results.items():
        print(
            f"{kind:6} {result['cpu_ms']:8.3f} {result['wall_ms']:8.3f}  "
            f"{result['statuses']}, {result['gc_collections']}"
        )
    summary = {
        "bench": "gateway_cpu",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "load_average": " / ".join(f"{n:.2f}" for n in os.getloadavg()),
        "results": results,
    }
    line = json.dumps(summary, sort_keys=True)
    RESULTS.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
