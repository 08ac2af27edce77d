"""Running the sandbox exchange standalone (`botmarket sandbox`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.core.logging import configure_logging
from app.core.settings import Environment, get_settings
from app.sandbox.server import create_sandbox_app, parse_accounts
from app.sandbox.streams import StreamRules


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 8900,
    accounts_file: str | None = None,
    seed: int = 7,
    stream_rules: StreamRules | None = None,
) -> None:
    import uvicorn

    settings = get_settings()
    if settings.environment is Environment.production:
        # Its money is made up, and its operator paths credit any balance.
        raise SystemExit(
            "botmarket sandbox refuses to start under ENVIRONMENT=production: it is a fake "
            "exchange for development and tests"
        )
    configure_logging(settings.log_level)
    accounts = parse_accounts(json.loads(Path(accounts_file).read_text())) if accounts_file else []
    token = settings.sandbox_operator_token
    rules = stream_rules or StreamRules()
    uvicorn.run(
        create_sandbox_app(
            accounts,
            seed=seed,
            operator_token=token.get_secret_value() if token else None,
            stream_rules=rules,
        ),
        host=host,
        port=port,
        log_config=None,  # uvicorn's lines go through the service's JSON logging
        access_log=False,  # a line per exchange call would drown everything else
        **rules.uvicorn_options(),
    )


def stream_rules(text: str) -> StreamRules:
    """`--stream-rules`: a JSON object of StreamRules fields."""
    return StreamRules(**json.loads(text))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback by default; the operator paths answer loopback clients, and others "
        "only with SANDBOX_OPERATOR_TOKEN",
    )
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument(
        "--accounts",
        help='JSON file: [{"api_key": ..., "api_secret": ..., "balances": {"USDT": "10000"}}]',
    )
    parser.add_argument("--seed", type=int, default=7, help="the market's price paths")
    parser.add_argument(
        "--stream-rules",
        type=stream_rules,
        default=StreamRules(),
        help="the market streams' rules, Binance's unless given, e.g. '{\"max_lifetime_s\": 5}'",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="botmarket sandbox", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    run_sandbox(args.host, args.port, args.accounts, args.seed, args.stream_rules)
