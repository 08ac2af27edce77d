"""`botmarket`: the operator's entry point (serve, migrate, api-keys, marketplaces, keys, sandbox,
worker, beat, stream, run, backtest, verify)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.fernet import Fernet

from app.api_keys.schemas import Scope
from app.core.logging import configure_logging
from app.core.migrations import migrate
from app.core.settings import Settings, get_settings
from app.sandbox.run import add_arguments as add_sandbox_arguments
from app.sandbox.run import run_sandbox

T = TypeVar("T")
# How long a live stream's peer has to answer a WebSocket ping (uvicorn's default).
PONG_TIMEOUT_S = 20.0


async def _with_session(work):
    from app.core.db import create_engine, create_sessionmaker, session_scope

    settings = get_settings()
    engine = create_engine(settings.database_url, pool=False)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            return await work(session, settings)
    finally:
        await engine.dispose()


def _assertion_settings(args: argparse.Namespace) -> tuple[list[tuple[Any, bytes]], Any]:
    """The public keys and mode of `--assertion-key/--assertion-alg/--assertion-mode`."""
    from app.core.principal_assertions import (
        Algorithm,
        AssertionMode,
        InvalidPublicKey,
        decode_public_key,
    )

    algorithm = Algorithm(args.assertion_alg)
    try:
        keys = [(algorithm, decode_public_key(algorithm, k)) for k in args.assertion_key or []]
    except InvalidPublicKey as exc:
        raise SystemExit(f"--assertion-key: {exc}") from exc
    return keys, AssertionMode(args.assertion_mode) if args.assertion_mode else None


def _run_service(work: Callable[[Any, Settings], Awaitable[T]]) -> T:
    """Run a service call in its own committed transaction; a refusal is the exit message."""
    from app.core.errors import AppError

    try:
        return asyncio.run(_with_session(work))
    except AppError as exc:
        raise SystemExit(exc.message) from exc


def create_api_key(args: argparse.Namespace) -> None:
    from app.api_keys.service import create_api_key as create

    keys, mode = _assertion_settings(args)

    async def work(session: Any, settings: Settings) -> Any:
        return await create(
            session,
            args.name,
            Scope(args.scope),
            None,
            keys,
            mode,
            marketplace=args.marketplace,
            create_marketplace=settings.makes_missing_marketplaces,
            rate_limit_per_minute=args.rate_limit,
        )

    created = _run_service(work)
    if created.marketplace is not None:
        print(
            f"marketplace {created.marketplace.name}: assertion mode "
            f"{created.marketplace.assertion_mode}, {len(created.assertion_keys)} assertion key(s)"
        )
    print(f"created {args.scope} key {created.row.id!s} ({args.name}); it is shown only this once:")
    print(created.plaintext)


def marketplaces_command(args: argparse.Namespace) -> None:
    from app.marketplaces import repository, service

    if args.action == "create":
        keys, mode = _assertion_settings(args)

        async def create(session: Any, _settings: Settings) -> Any:
            return await service.create(session, args.name, keys, mode)

        made, held = _run_service(create)
        print(
            f"created marketplace {made.name}: assertion mode {made.assertion_mode}, "
            f"{len(held)} assertion key(s)"
        )
        return

    async def listed(session: Any, _settings: Settings) -> list[Any]:
        rows = await repository.page(session, None, 1000)
        return [(row.name, row.assertion_mode) for row in rows]

    for name, assertion_mode in _run_service(listed):
        print(f"{name}\tassertion mode {assertion_mode}")


def rotate_keys() -> None:
    """Every Fernet-encrypted value: exchange credentials, stored idempotent responses and
    webhook secrets."""
    from app.core.crypto import Keyring
    from app.credentials import service as credentials
    from app.idempotency.service import rotate_bodies
    from app.webhooks import service as webhooks

    async def work(session, settings):
        keyring = Keyring.parse(settings.fernet_keyring_text())
        return (
            keyring.primary_key_id,
            await credentials.rotate_all(session, keyring),
            await rotate_bodies(session, keyring),
            await webhooks.rotate_all(session, keyring),
        )

    key_id, rotated, bodies, secrets = asyncio.run(_with_session(work))
    print(
        f"rotated {rotated} credential(s), {bodies} stored response(s) and {secrets} webhook "
        f"secret(s) to key {key_id}"
    )


def celery(command: str, extra: list[str]) -> None:
    """Become the Celery program; app/ names the workers package but never imports it."""
    # A directory named without a listener (`botmarket run` names one) must exist too: an
    # unlabelled metric writes its file there as soon as its module is imported.
    if command == "worker" and (
        get_settings().worker_metrics_port or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    ):
        _prepare_metrics_dir()
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", command, *extra]
    if "--loglevel" not in extra and "-l" not in extra:
        argv += ["--loglevel", "INFO"]
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and fixed arguments


def _prepare_metrics_dir() -> None:
    """Where the worker's pool processes write their metrics for its listener to sum.

    prometheus_client reads PROMETHEUS_MULTIPROC_DIR when first imported, so it is set here,
    before Celery starts. A given directory is emptied: a previous run's samples would be
    added to this one's forever.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not configured:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="botmarket-metrics-")
        return
    directory = Path(configured)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


# TLS 1.2's suites with forward secrecy and authenticated encryption only; TLS 1.3's own
# suites are all of that and are not chosen by this string.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def serve(host: str, port: int, certfile: str | None = None, keyfile: str | None = None) -> None:
    import uvicorn

    tls: dict[str, Any] = (
        {
            "ssl_certfile": certfile,
            "ssl_keyfile": keyfile,
            "ssl_ciphers": TLS12_CIPHERS,
            "ssl_context_factory": tls_context,
        }
        if certfile
        else {}
    )
    # WebSocket pings keep idle live streams open through proxies (and find dead peers).
    heartbeat = get_settings().stream_heartbeat_s
    # Logging is the app's own (JSON, one access line per request by our middleware).
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        ws_ping_interval=heartbeat,
        # However often pings go, a peer gets this long to answer: a browser tab in the
        # background or a client on a busy machine may take seconds.
        ws_ping_timeout=PONG_TIMEOUT_S,
        # A live stream's frames are small and each is sent to many sockets: per-message
        # compression would keep a compressor per connection, about half of an idle one's
        # memory (bench/events.py), for little saved on the wire.
        ws_per_message_deflate=False,
        **tls,
    )


def tls_context(_config: object, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's context, at TLS 1.2 at least; OpenSSL picks 1.3 whenever the client has it."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _chain_hash(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError("must be a SHA-256 in hex (64 characters)")
    return text.lower()


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _progress_line(done: int, total: int, unit: str = "candles") -> None:
    filled = 30 * done // total if total else 30
    percent = 100 * done // total if total else 100
    bar = "#" * filled + "." * (30 - filled)
    print(f"\r[{bar}] {percent:3d}% {done}/{total} {unit}", end="", file=sys.stderr, flush=True)


def backtest(args: argparse.Namespace) -> None:
    """One backtest in this process, on the configured database and exchange (no worker)."""
    from pydantic import ValidationError

    from app.backtests.schemas import BacktestCreate

    try:
        body = BacktestCreate(
            version=args.version,
            symbol=args.symbol,
            timeframe=args.timeframe,
            start=_utc(args.start),
            end=_utc(args.end),
            quote_amount=args.quote,
            llm=args.llm,
            max_llm_cost_usd=args.max_llm_cost,
        )
    except (ValidationError, ValueError) as exc:
        raise SystemExit(f"invalid backtest: {exc}") from exc
    started = time.monotonic()
    row = asyncio.run(_run_backtest(args.bot, body))
    print(file=sys.stderr)
    if row.status != "succeeded" or row.result is None:
        raise SystemExit(f"backtest {row.id} {row.status}: {row.error or ''}")
    from app.backtests.report import render_html, summary_rows

    width = max(len(label) for label, _ in summary_rows(row.result))
    print(f"backtest {row.id}: bot {row.bot_id} v{row.bot_version}, {row.symbol} {row.timeframe}")
    for label, value in summary_rows(row.result):
        print(f"  {label:<{width}}  {value}")
    for warning in row.result.get("warnings", []):
        print(f"  note: {warning}")
    print(f"{row.candles_total} candles replayed in {time.monotonic() - started:.1f} s")
    if args.report:
        Path(args.report).write_text(render_html(f"Backtest {row.id}", row.result))
        print(f"report written to {args.report}")


def verify(args: argparse.Namespace) -> None:
    """Check a bot's chain from the public endpoints and klines (docs/verification.md); exit 0
    only when every check holds."""
    from app.verification.verifier import VerifyError

    key = args.api_key or os.environ.get("BOTMARKET_API_KEY")
    if not key:
        raise SystemExit("verify needs an API key of any scope: --api-key or BOTMARKET_API_KEY")
    started = time.monotonic()
    try:
        report = asyncio.run(_verify(args, key))
    except VerifyError as exc:
        raise SystemExit(f"\ncould not verify: {exc}") from exc
    print(file=sys.stderr)
    for line in report.summary():
        print(line)
    print(f"in {time.monotonic() - started:.1f} s")
    if not report.ok:
        raise SystemExit(1)


async def _verify(args: argparse.Namespace, key: str) -> Any:
    import httpx

    from app.verification.verifier import verify as verify_chain

    async with (
        httpx.AsyncClient(base_url=args.url, headers={"X-API-Key": key}, timeout=30) as api,
        httpx.AsyncClient(base_url=args.klines_url, timeout=30) as exchange,
    ):
        return await verify_chain(
            api,
            exchange,
            args.bot,
            args.from_seq,
            args.head_hash,
            progress=functools.partial(_progress_line, unit="decisions"),
        )


async def _run_backtest(bot_id: str, body):
    from app.backtests import service
    from app.backtests.flows import BacktestFlows
    from app.backtests.repository import Owner
    from app.bots import repository as bots
    from app.core.db import create_engine, create_sessionmaker, session_scope, utcnow
    from app.core.errors import AppError
    from app.core.redis_clients import open_redis
    from app.integrations.binance.clients import BinanceClients
    from app.integrations.llm.registry import VoterPool
    from app.models import Backtest

    settings = get_settings()
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    redis = open_redis(settings)
    clients = BinanceClients.from_settings(settings, redis)
    voters = VoterPool(settings)

    async def unqueued(name, _kwargs):
        raise RuntimeError(f"a local backtest sends no job ({name})")

    try:
        async with session_scope(sessionmaker) as session:
            bot = await bots.get(session, bot_id)
            if bot is None:
                raise SystemExit(f"no bot {bot_id}")
            # An operator's run: no API key or renter owns it.
            row = await service.create(session, bot, Owner(), body, settings, utcnow())
        flows = BacktestFlows(sessionmaker, clients, voters, settings, unqueued)
        await flows.run(row.id, budget_s=None, progress=_progress_line)
        async with sessionmaker() as session:
            return await session.get(Backtest, row.id)
    except AppError as exc:
        raise SystemExit(exc.message) from exc
    finally:
        await voters.aclose()
        await clients.close()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botmarket", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    settings = get_settings()

    serve_cmd = commands.add_parser("serve", help="run the API")
    serve_cmd.add_argument("--host", default=settings.api_host)
    serve_cmd.add_argument("--port", type=int, default=settings.api_port)
    serve_cmd.add_argument(
        "--ssl-certfile", default=settings.ssl_certfile, help="PEM certificate chain: serve HTTPS"
    )
    serve_cmd.add_argument("--ssl-keyfile", default=settings.ssl_keyfile, help="its private key")

    commands.add_parser("migrate", help="alembic upgrade head on DATABASE_URL")

    _add_api_keys_command(commands)

    keys = commands.add_parser("keys", help="the Fernet and chain-signing keyrings").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("rotate", help="re-encrypt every encrypted value under the newest key")
    keys.add_parser("generate", help="print a new Fernet key for FERNET_KEYS")
    keys.add_parser(
        "generate-signing",
        help="print a new Ed25519 seed for SIGNING_KEYS (write it as <id>:<seed>)",
    )

    add_sandbox_arguments(commands.add_parser("sandbox", help="the Binance-compatible sandbox"))
    commands.add_parser("worker", help="a Celery worker (extra arguments go to celery)")
    commands.add_parser("beat", help="Celery beat (extra arguments go to celery)")
    commands.add_parser(
        "stream", help="Binance's market streams: decisions at each close (one active process)"
    )
    commands.add_parser(
        "run", help="everything at once: sandbox, API, worker with beat, streams; seeds a demo"
    )

    _add_marketplaces_command(commands)
    _add_backtest_command(commands)
    _add_verify_command(commands)
    return parser


def _add_api_keys_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api_keys = commands.add_parser("api-keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = api_keys.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", required=True, choices=[s.value for s in Scope])
    create.add_argument(
        "--marketplace",
        metavar="NAME",
        help="marketplace keys: the marketplace whose renters the key acts for (default: "
        "default); made on the fly in development, elsewhere create it first",
    )
    _add_assertion_arguments(create, "marketplace keys: ")
    create.add_argument(
        "--rate-limit",
        type=_positive_int,
        metavar="N",
        help="requests a minute for the whole key (default: MARKETPLACE_RATE_LIMIT_PER_MINUTE "
        "for a marketplace key, else RATE_LIMIT_PER_MINUTE)",
    )


def _add_marketplaces_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    marketplaces = commands.add_parser(
        "marketplaces", help="the marketplaces whose keys act for their own renters"
    ).add_subparsers(dest="action", required=True)
    create = marketplaces.add_parser("create", help="create a marketplace")
    create.add_argument("--name", required=True)
    _add_assertion_arguments(create, "")
    marketplaces.add_parser("list", help="every marketplace with its assertion mode")


def _add_assertion_arguments(parser: argparse.ArgumentParser, scope_note: str) -> None:
    """The marketplace's assertion keys and mode (a marketplace key's apply to its marketplace)."""
    parser.add_argument(
        "--assertion-key",
        action="append",
        metavar="BASE64",
        help=f"{scope_note}a public key of the canister that signs principal assertions, "
        "added to the marketplace's (repeatable)",
    )
    parser.add_argument("--assertion-alg", choices=["ed25519", "secp256k1"], default="ed25519")
    parser.add_argument(
        "--assertion-mode",
        choices=["off", "optional", "required"],
        help="the marketplace's; default: unchanged, or required when assertion keys come to a "
        "marketplace whose mode is off",
    )


def _add_backtest_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bt = commands.add_parser("backtest", help="replay a bot over history here, with a report")
    bt.add_argument("--bot", required=True, help="bot id")
    bt.add_argument("--version", type=int, help="bot version (default: the latest)")
    bt.add_argument("--symbol", required=True)
    bt.add_argument("--timeframe", required=True)
    bt.add_argument("--from", dest="start", required=True, help="ISO date or time, UTC if naive")
    bt.add_argument("--to", dest="end", required=True, help="exclusive; not in the future")
    bt.add_argument("--llm", choices=["recorded", "indicators", "ask"], default="recorded")
    bt.add_argument("--max-llm-cost", default="0", help="USD; --llm ask refuses above it")
    bt.add_argument("--quote", default="1000", help="starting capital in the quote asset")
    bt.add_argument("--report", help="write an HTML report with the equity chart here")


def _add_verify_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "verify", help="check a bot's decision chain from its public endpoints and klines"
    )
    check.add_argument("--url", required=True, help="the service's base URL, e.g. https://...")
    check.add_argument("--bot", required=True, help="bot id")
    check.add_argument("--api-key", help="any scope (default: BOTMARKET_API_KEY)")
    check.add_argument(
        "--klines-url",
        default="https://api.binance.com",
        help="a Binance-compatible REST API serving /api/v3/klines (default: Binance's)",
    )
    check.add_argument("--from-seq", type=_positive_int, default=1, metavar="N")
    check.add_argument(
        "--head-hash",
        type=_chain_hash,
        metavar="H",
        help="the hash of a head recorded earlier: fail unless the chain still holds it",
    )


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    settings = get_settings()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("worker", "beat"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
            parser.error("--ssl-certfile and --ssl-keyfile go together")
        serve(args.host, args.port, args.ssl_certfile, args.ssl_keyfile)
    elif args.command == "migrate":
        configure_logging(settings.log_level)  # alembic's progress, as JSON lines like the rest
        migrate()
    elif args.command == "api-keys":
        create_api_key(args)
    elif args.command == "marketplaces":
        marketplaces_command(args)
    elif args.command == "keys" and args.action == "rotate":
        rotate_keys()
    elif args.command == "keys" and args.action == "generate-signing":
        from app.core.signing import generate_seed

        print(generate_seed())
    elif args.command == "keys":
        print(Fernet.generate_key().decode())
    elif args.command == "sandbox":
        run_sandbox(args.host, args.port, args.accounts, args.seed, args.stream_rules)
    elif args.command in ("worker", "beat"):
        celery(args.command, extra)
    elif args.command == "stream":
        from app.market_streams.process import run_stream

        run_stream(settings)
    elif args.command == "backtest":
        backtest(args)
    elif args.command == "verify":
        verify(args)
    elif args.command == "run":
        from app.supervisor import run

        raise SystemExit(run(settings))


if __name__ == "__main__":
    main()
