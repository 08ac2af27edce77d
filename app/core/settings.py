"""Service settings, read once from the environment (and `.env`).

Secrets are `SecretStr` so they never show in a repr or a log line. In production the service
refuses to start without real secrets and on the embedded conveniences that are only safe for
one developer's machine (SQLite, a SQLite broker, no Redis, metrics on the public port); in
development it makes its own Fernet key under `./var` so that `make run` works on a bare
machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from cryptography.fernet import Fernet
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.signing import generate_seed

log = logging.getLogger(__name__)

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "placeholder", "xxx"})
DEV_FERNET_KEY_FILE = Path("var/fernet.key")
DEV_SIGNING_KEY_FILE = Path("var/signing.key")
EMBEDDED_BROKER = Path("var/celery-broker.sqlite")


class Environment(StrEnum):
    development = "development"
    production = "production"


class SettingsError(ValueError):
    """The configuration is unusable; the message says which variable to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Environment = Environment.development
    database_url: str = "sqlite+aiosqlite:///./var/botmarket.db"
    # A password goes in the URL (redis://:password@host:6379/0); rediss:// is Redis over TLS.
    redis_url: str | None = None
    # A CA file (PEM) that signs the Redis server's certificate, for rediss:// URLs (of
    # REDIS_URL and CELERY_BROKER_URL) whose server is not signed by a system-trusted root.
    redis_ssl_ca_certs: str | None = None
    # Comma-separated keyring, newest first: `<key_id>:<fernet key>` (or a bare key, whose id is
    # derived from it). The first key encrypts; all of them decrypt.
    fernet_keys: Annotated[SecretStr, NoDecode] = SecretStr("")
    # Comma-separated Ed25519 keyring, newest first: `<key_id>:<base64 32-byte seed>`. The
    # first signs each bot's decision-chain head; all of them are published for verifying.
    signing_keys: Annotated[SecretStr, NoDecode] = SecretStr("")
    # The prompt text a decision's voters were sent is kept this long (its SHA-256 forever).
    prompt_retention_days: int = Field(default=90, ge=1)
    # A track record shows a mode's renters' results only when at least this many distinct
    # renters have a fill in it (docs/track-records.md); below 5 a band would come close to
    # describing one renter.
    track_record_min_renters: int = Field(default=10, ge=5)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # HTTPS on the API's own port (`botmarket serve`), TLS 1.2 at least: a PEM certificate
    # chain and its key. Unset: plain HTTP, for a TLS-terminating proxy in front (compose's).
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Address of the metrics listeners (the API's and the worker's): loopback by default; in
    # docker compose 0.0.0.0, where only containers on the metrics network reach it.
    metrics_bind: str = "127.0.0.1"
    # The API's Prometheus listener; 0 serves /metrics on the API's own port instead, which
    # production refuses (anyone who reaches the API would read its traffic).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    log_level: str = "INFO"
    # Swagger UI on /docs and the document on /openapi.json, in production too: bot developers
    # and admins are its users, and it shows nothing that is not in the published contract.
    docs_enabled: bool = True
    # The browser console on /console for developers and admins (README, Console), in every
    # environment like /docs; its sessions last this long at most from sign-in.
    console_enabled: bool = True
    console_session_hours: float = Field(default=12.0, gt=0, le=12)
    max_body_bytes: int = 64 * 1024
    # Request headers (names and values) a request may carry; beyond either: 431.
    max_header_count: int = Field(default=100, ge=10)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    # Requests per minute per API key, and per renter for a marketplace key; replays of
    # idempotent requests do not count.
    rate_limit_per_minute: int = Field(default=600, ge=1)
    # Requests per minute of a marketplace key, all its renters together, unless the key sets
    # its own (`api-keys create --rate-limit`).
    marketplace_rate_limit_per_minute: int = Field(default=60_000, ge=1)
    api_key_cache_ttl_s: float = Field(default=2.0, gt=0, le=5)
    idempotency_ttl_hours: int = Field(default=24, ge=24)
    # How long a copy waits for the first copy of the same idempotent request to finish.
    idempotency_wait_s: float = 25.0
    # An in-progress record is its copy's for this long, then any copy may take it over (its
    # process died); completed, it lives IDEMPOTENCY_TTL_HOURS. Longer than any request: the
    # waiting copies give up after IDEMPOTENCY_WAIT_S and the outcall itself after ~30 s.
    idempotency_lease_s: float = Field(default=60.0, gt=30)
    max_quote_amount: Decimal = Decimal("1000000")
    # Production refuses to serve a marketplace key whose assertion mode is off (whoever holds
    # it acts for any principal) unless this is set, knowingly.
    allow_unsigned_principals: bool = False

    # LLM providers, named the way their SDKs name them. A provider without a key is not
    # configured and never called.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    gemini_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY")
    )
    google_gemini_base_url: str | None = None
    # Any OpenAI-compatible server (a local Ollama or vLLM); configured when the URL is set.
    openai_compatible_base_url: str | None = None
    openai_compatible_api_key: SecretStr = SecretStr("not-needed")
    llm_timeout_s: float = Field(default=20.0, gt=0, le=120)
    # USD per million tokens, per model: {"gpt-4o-mini": {"input": "0.15", "output": "0.6"}}.
    # A bot may only use a model priced here, or give the price in its voter config.
    llm_prices: dict[str, dict[str, Decimal]] = Field(
        default_factory=lambda: {
            "gpt-4o-mini": {"input": Decimal("0.15"), "output": Decimal("0.60")},
            "claude-haiku-4-5": {"input": Decimal("1.00"), "output": Decimal("5.00")},
            "gemini-2.5-flash": {"input": Decimal("0.30"), "output": Decimal("2.50")},
        }
    )

    # The most a bot's owner may let its LLM panel spend per UTC day.
    max_llm_daily_budget_usd: Decimal = Field(default=Decimal(100), ge=0)
    # A decision's LLM round is claimed in the database for this long: longer than the
    # round's candle fetch and LLM deadline, so a live owner never loses it, while a crashed
    # owner's claim (and its budget reservation) is taken over after it.
    decision_lease_s: float = Field(default=180.0, ge=10)
    # How long a process waits for another's round of the same decision before the task
    # retries.
    decision_wait_s: float = Field(default=30.0, gt=0)

    # Lets a client other than loopback use the sandbox exchange's operator paths (fault
    # injection, accounts, limits), sent in X-Sandbox-Operator-Token; unset: loopback only.
    sandbox_operator_token: SecretStr | None = None

    # Binance: one host override for live and testnet (the sandbox exchange, e.g.
    # http://127.0.0.1:8900); unset means Binance's own hosts.
    binance_api_url: str | None = None
    # Our share of Binance's 6000 weight per minute per IP, leaving headroom for anything
    # else on the same address.
    binance_weight_per_minute: int = Field(default=5000, ge=1, le=6000)
    # Exchange rules are kept this long, in Redis with a millisecond expiry: under a second
    # is no cache at all, and 0 an expiry Redis refuses.
    binance_rules_ttl_s: float = Field(default=300.0, ge=1)
    # A renter's client holds their plaintext key: a worker closes it after this long unused.
    binance_client_idle_s: float = Field(default=300.0, gt=0)
    # Binance's market streams (`botmarket stream`): its WebSocket host, Binance's own unless
    # set (`botmarket run` points it at the sandbox's port).
    binance_stream_url: str = "wss://stream.binance.com:9443"
    # How often the stream process rereads what to stream (a new subscription's klines, a new
    # position's prices) from the database.
    stream_refresh_s: float = Field(default=2.0, gt=0)
    # Binance's streams per connection: a larger set is split over more connections.
    stream_max_per_connection: int = Field(default=1024, ge=1, le=1024)
    # A streamed price older than this is not used: orders and exits read the exchange's, and
    # beat's exit pass checks the positions of its symbol (no stream watches them).
    stream_price_max_age_s: float = Field(default=5.0, gt=0)
    # The active stream process holds its lease this long unrenewed; a standby takes over
    # after it (a third of it between renewals).
    stream_lease_s: float = Field(default=6.0, gt=0, le=9)
    # Paper trading: the price moves against each simulated market order by this fraction,
    # and a paper subscription's virtual wallet starts at this multiple of its quote_amount.
    paper_slippage: Decimal = Field(default=Decimal("0.0005"), ge=0, le=Decimal("0.05"))
    paper_wallet_multiple: Decimal = Field(default=Decimal(10), gt=0)
    # Binance executes a signed request only if it arrives within this window of its
    # timestamp; after that, an order that is not on the exchange never will be.
    binance_recv_window_ms: int = Field(default=5000, ge=1000, le=60000)
    # How long the owner of an order attempt holds it before another worker may take it over
    # (a crash is recovered after the lease plus one reconciler sweep). It must outlast the
    # receive window, so that a taker who does not find the order knows it cannot appear.
    order_lease_s: float = Field(default=15.0, gt=0)
    # An order for a decision is sent only before the candle after the decided one closes,
    # or within these seconds of the decided candle's close where a timeframe is listed
    # here ({"1d": 3600}); never later than the cap.
    order_freshness_s: dict[str, float] = Field(default_factory=dict)
    order_freshness_cap_s: float = Field(default=900.0, gt=0)
    # How often beat's reconciler resolves attempts whose lease ran out, retries unfinished
    # expiries and sends the orders of decisions whose execute job was lost.
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    # How long a backtest's worker holds its run between two saves before beat's sweep hands
    # it to another. Unset: long enough for the slowest chunk (LLM rounds when asking) plus a
    # minute. The fence keeps a run from going on twice at once whatever the lease, but a
    # chunk that outlasts it is taken over and replayed again, so shorten it only where
    # chunks are quick (tests of crash recovery).
    backtest_lease_s: float | None = Field(default=None, gt=0)
    # How often beat's sweep resends the backtests whose worker died or whose job was lost.
    backtest_resume_interval_s: float = Field(default=60.0, gt=0)

    # Workers.
    celery_broker_url: str | None = None
    # A task still running after the hard limit is killed (its pool process replaced); the
    # soft limit raises inside it first, so it can stop cleanly.
    celery_task_time_limit_s: int = Field(default=300, ge=1)
    celery_task_soft_time_limit_s: int = Field(default=240, ge=1)
    # Redis redelivers an unacknowledged task after this long: a live worker's task must have
    # ended (at the latest, killed at the hard limit) by then, or it would run twice at once.
    celery_visibility_timeout_s: int = Field(default=600, ge=1)
    dispatch_interval_s: float = Field(default=15.0, gt=0)
    # Beat's exit pass: it returns at once while the market streams watch every held symbol.
    protect_interval_s: float = Field(default=2.0, gt=0)
    # How often beat numbers committed events for the feed (a feed read also does when behind).
    event_sequence_interval_s: float = Field(default=1.0, gt=0)
    # Events older than this are purged; a feed cursor older than that resumes at what is left.
    event_retention_days: int = Field(default=30, ge=1)
    # Identical feed polls within this many seconds are answered with the same bytes, read
    # once: a canister's outcall reaches the API once from every replica of its subnet (13 or
    # more), and their answers must agree. A poll sees new events at most this late; 0 reads
    # every poll (identical polls in flight together still share one read).
    feed_replica_window_s: float = Field(default=2.0, ge=0)
    # The live stream (WebSocket and SSE). A ticket opens one renter's stream once, this soon.
    stream_ticket_ttl_s: float = Field(default=60.0, gt=0)
    # WebSocket pings (`botmarket serve` gives them to uvicorn) and SSE comment heartbeats:
    # an idle connection still speaks this often, so proxies keep it open.
    stream_heartbeat_s: float = Field(default=20.0, gt=0)
    # Events waiting for one connection; a client that falls further behind is dropped and
    # resumes with its cursor, rather than growing the server's memory. Keep it above the
    # hub's read (500 events), which reaches a connection all at once.
    stream_queue_size: int = Field(default=1000, ge=1)
    # How often each API process's hub reads new events from the outbox unasked: without
    # Redis the only way it learns of them; with Redis a safety net for a missed doorbell.
    stream_poll_s: float = Field(default=0.25, gt=0)
    stream_safety_poll_s: float = Field(default=5.0, gt=0)
    execute_chunk_size: int = Field(default=100, ge=1, le=1000)

    # Webhooks. How often beat matches newly numbered events to endpoints, and how often it
    # resends the deliveries that are due (a retry, or a job lost with its worker).
    webhook_dispatch_interval_s: float = Field(default=1.0, gt=0)
    webhook_retry_interval_s: float = Field(default=5.0, gt=0)
    # One POST may take this long in all; a worker claims a delivery for the lease, then
    # another may (the first died), so the lease outlasts the timeout.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    webhook_lease_s: float = Field(default=60.0, gt=0)
    # Seconds to wait after the 1st, 2nd, ... failed attempt, each stretched or shrunk by up to
    # the jitter fraction; after the last, the delivery has failed. The default tries for
    # about 28 hours.
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5.0, 60.0, 600.0, 3600.0, 3 * 3600.0] + [6 * 3600.0] * 4,
        min_length=1,
    )
    webhook_retry_jitter: float = Field(default=0.1, ge=0, lt=1)
    # An endpoint with nothing but failed attempts for this long is disabled.
    webhook_disable_after_hours: float = Field(default=72.0, gt=0)
    # After a secret rotation the old secret signs too (a second signature) for this long.
    webhook_secret_overlap_hours: float = Field(default=24.0, ge=0)
    # Deliveries one job sends at once, concurrently.
    webhook_batch_size: int = Field(default=100, ge=1, le=1000)
    # A worker's Prometheus listener (0: none): one per worker, summing every pool process.
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)

    @field_validator("llm_prices")
    @classmethod
    def _prices_are_complete(
        cls, prices: dict[str, dict[str, Decimal]]
    ) -> dict[str, dict[str, Decimal]]:
        for model, price in prices.items():
            if set(price) != {"input", "output"} or min(price.values()) < 0:
                raise SettingsError(
                    f"LLM_PRICES[{model!r}] must be {{'input': USD, 'output': USD}} per million "
                    "tokens, neither negative"
                )
        return prices

    @model_validator(mode="after")
    def _lease_outlasts_a_round(self) -> Settings:
        if self.decision_lease_s <= self.llm_timeout_s + 30:
            raise SettingsError(
                "DECISION_LEASE_S must exceed LLM_TIMEOUT_S by more than 30 s (the candle fetch), "
                "or a live round could lose its claim to another process"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlasts_the_receive_window(self) -> Settings:
        # One second of slack for the clock offset between us and the exchange.
        if self.order_lease_s < self.binance_recv_window_ms / 1000 + 1:
            raise SettingsError(
                f"ORDER_LEASE_S ({self.order_lease_s:g}) must be at least "
                f"BINANCE_RECV_WINDOW_MS / 1000 + 1 ({self.binance_recv_window_ms / 1000 + 1:g}): "
                "a shorter lease lets a second worker resend an order the exchange may still "
                "execute"
            )
        return self

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _delays_are_positive(cls, delays: list[float]) -> list[float]:
        if min(delays) < 0:
            raise SettingsError("WEBHOOK_RETRY_SCHEDULE_S lists seconds to wait, none negative")
        return delays

    @model_validator(mode="after")
    def _webhook_lease_outlasts_a_post(self) -> Settings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise SettingsError(
                f"WEBHOOK_LEASE_S ({self.webhook_lease_s:g}) must exceed WEBHOOK_TIMEOUT_S "
                f"({self.webhook_timeout_s:g}): another worker would send a delivery whose "
                "POST is still running"
            )
        return self

    @model_validator(mode="after")
    def _idempotency_lease_outlasts_the_wait(self) -> Settings:
        if self.idempotency_lease_s <= self.idempotency_wait_s:
            raise SettingsError(
                f"IDEMPOTENCY_LEASE_S ({self.idempotency_lease_s:g}) must exceed "
                f"IDEMPOTENCY_WAIT_S ({self.idempotency_wait_s:g}): a shorter lease lets a "
                "waiting copy take over a request that is still running and run it twice"
            )
        return self

    @model_validator(mode="after")
    def _redelivery_waits_for_the_hard_time_limit(self) -> Settings:
        if self.celery_task_soft_time_limit_s >= self.celery_task_time_limit_s:
            raise SettingsError(
                f"CELERY_TASK_SOFT_TIME_LIMIT_S ({self.celery_task_soft_time_limit_s}) must be "
                f"below CELERY_TASK_TIME_LIMIT_S ({self.celery_task_time_limit_s}), or a task is "
                "killed before it is asked to stop"
            )
        if self.celery_visibility_timeout_s <= self.celery_task_time_limit_s:
            raise SettingsError(
                f"CELERY_VISIBILITY_TIMEOUT_S ({self.celery_visibility_timeout_s}) must exceed "
                f"CELERY_TASK_TIME_LIMIT_S ({self.celery_task_time_limit_s}): Redis would hand "
                "a task that is still running to a second worker"
            )
        return self

    @model_validator(mode="after")
    def _production_refuses_unsafe_setups(self) -> Settings:
        if self.environment is not Environment.production:
            return self
        problems = []
        if self.fernet_keys.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            problems.append(
                "FERNET_KEYS is missing or a placeholder: production needs a real key "
                "(generate one with `botmarket keys generate`)"
            )
        if self.signing_keys.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            problems.append(
                "SIGNING_KEYS is missing or a placeholder: production signs every bot's "
                "decision chain with a key of its own, the same in every process "
                "(generate one with `botmarket keys generate-signing`)"
            )
        if _is_sqlite(self.database_url):
            problems.append(
                "DATABASE_URL is SQLite: it allows one writer at a time on one host's disk; "
                "production needs MySQL/MariaDB (mysql+asyncmy://user:pass@host/db)"
            )
        if not self.redis_url:
            problems.append(
                "REDIS_URL is not set: without it every process keeps its own Binance "
                "rate-limit governor, multiplying BINANCE_WEIGHT_PER_MINUTE by the number of "
                "processes (a ban for every renter), and API rate limits and key revocations "
                "stay per process"
            )
        if _is_sqlite(self.broker_url):
            problems.append(
                "CELERY_BROKER_URL is a SQLite broker (kombu's SQLAlchemy transport): a polled "
                "file on one host; production needs Redis (CELERY_BROKER_URL or REDIS_URL)"
            )
        if not self.metrics_port:
            problems.append(
                "METRICS_PORT is not set: /metrics would be served on the public API port; "
                "production serves it on its own port (METRICS_BIND:METRICS_PORT)"
            )
        if problems:
            raise SettingsError(
                "ENVIRONMENT=production refuses:" + "".join(f"\n  - {p}" for p in problems)
            )
        return self

    def configured_llm_providers(self) -> list[str]:
        keys = {
            "openai": self.openai_api_key,
            "anthropic": self.anthropic_api_key,
            "gemini": self.gemini_api_key,
        }
        configured = [name for name, key in keys.items() if key and key.get_secret_value()]
        if self.openai_compatible_base_url:
            configured.append("openai_compatible")
        return configured

    @property
    def makes_missing_marketplaces(self) -> bool:
        """Whether a key or listing naming an unknown marketplace makes it: in development
        only, so a local run needs no setup step while elsewhere a typo cannot split one
        marketplace's renters into two."""
        return self.environment is Environment.development

    @property
    def broker_url(self) -> str:
        """Celery's broker: CELERY_BROKER_URL, else Redis, else a SQLite file (embedded)."""
        return self.celery_broker_url or self.redis_url or f"sqla+sqlite:///{EMBEDDED_BROKER}"

    def fernet_keyring_text(self) -> str:
        """The configured keyring, or in development a key created once under ./var."""
        configured = self.fernet_keys.get_secret_value().strip()
        if configured:
            return configured
        return _dev_secret(
            DEV_FERNET_KEY_FILE,
            lambda: Fernet.generate_key().decode(),
            "FERNET_KEYS",
            "before storing real credentials",
        )

    def signing_keyring_text(self) -> str:
        """The configured signing keyring, or in development a key created once under ./var."""
        configured = self.signing_keys.get_secret_value().strip()
        if configured:
            return configured
        return _dev_secret(
            DEV_SIGNING_KEY_FILE, generate_seed, "SIGNING_KEYS", "before publishing decision chains"
        )


def _dev_secret(path: Path, generate: Callable[[], str], variable: str, before: str) -> str:
    """A development secret made once under ./var, readable by its owner only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(generate())
        path.chmod(0o600)
        log.warning(
            "%s is not set: created a development key in %s. Set %s %s.",
            variable,
            path,
            variable,
            before,
        )
    return path.read_text().strip()


def _is_sqlite(url: str) -> bool:
    # sqlite+aiosqlite:// for the database, sqla+sqlite:// for kombu's SQLAlchemy broker.
    return url.removeprefix("sqla+").startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process's settings; unusable ones end the process with one plain message.

    Every entry point loads its settings here (the CLI's commands, Celery's app, uvicorn's
    factory), so each refuses the same way: pydantic's own report is a traceback that also
    repeats the input values, secrets among them.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise SystemExit(refusal_message(exc)) from None


def refusal_message(exc: ValidationError) -> str:
    """Every unusable setting, by its variable's name, and why."""
    lines = []
    for error in exc.errors():
        variable = "_".join(str(part) for part in error["loc"]).upper()
        why = error["msg"].removeprefix("Value error, ")
        lines.append(f"{variable}: {why}" if variable else why)
    return "botmarket cannot start, its settings are unusable:\n" + "\n".join(lines)
