from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from app.core import settings as settings_module
from app.core.settings import Settings
from app.core.signing import SigningKeyring, generate_seed


@pytest.mark.parametrize("value", ["", "changeme", "CHANGEME"])
def test_production_refuses_missing_or_placeholder_fernet_keys(value: str) -> None:
    with pytest.raises(ValidationError, match="FERNET_KEYS"):
        Settings(environment="production", fernet_keys=value)


@pytest.mark.parametrize("value", ["", "changeme"])
def test_production_refuses_missing_or_placeholder_signing_keys(value: str) -> None:
    with pytest.raises(ValidationError, match="SIGNING_KEYS is missing"):
        Settings(**{**PRODUCTION, "signing_keys": value})


def test_development_creates_a_signing_key_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "var" / "signing.key"
    monkeypatch.setattr(settings_module, "DEV_SIGNING_KEY_FILE", key_file)
    first = Settings(signing_keys="").signing_keyring_text()
    assert Settings(signing_keys="").signing_keyring_text() == first
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    (key,) = SigningKeyring.parse(first).public_keys()
    assert key.current and len(key.public_key) == 32
    assert sum("SIGNING_KEYS is not set" in r.getMessage() for r in caplog.records) == 1


def test_development_creates_a_key_once_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "var" / "fernet.key"
    monkeypatch.setattr(settings_module, "DEV_FERNET_KEY_FILE", key_file)
    first = Settings(fernet_keys="").fernet_keyring_text()
    second = Settings(fernet_keys="").fernet_keyring_text()
    assert first == second == key_file.read_text().strip()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert sum("FERNET_KEYS is not set" in r.getMessage() for r in caplog.records) == 1


def test_an_idempotency_lease_shorter_than_the_wait_is_refused() -> None:
    # Copies still waiting for a live first copy would take its key over and run it twice.
    with pytest.raises(ValidationError, match="IDEMPOTENCY_LEASE_S"):
        Settings(idempotency_lease_s=40, idempotency_wait_s=45)
    assert Settings().idempotency_lease_s == 60


def test_a_rules_cache_under_a_second_is_refused() -> None:
    # Kept in Redis with a millisecond expiry, which must be positive.
    with pytest.raises(ValidationError, match="binance_rules_ttl_s"):
        Settings(binance_rules_ttl_s=0)
    assert Settings(binance_rules_ttl_s=1).binance_rules_ttl_s == 1


PRODUCTION = {
    "environment": "production",
    "database_url": "mysql+asyncmy://botmarket:pw@db:3306/botmarket",
    "redis_url": "redis://redis:6379/0",
    "celery_broker_url": "redis://redis:6379/1",
    "fernet_keys": f"k1:{Fernet.generate_key().decode()}",
    "signing_keys": f"k1:{generate_seed()}",
    "metrics_port": 9100,
}


def test_a_production_setup_with_mysql_redis_and_a_metrics_port_loads() -> None:
    assert Settings(**PRODUCTION).environment.value == "production"


@pytest.mark.parametrize(
    ("change", "named", "why"),
    [
        (
            {"database_url": "sqlite+aiosqlite:///./var/botmarket.db"},
            "DATABASE_URL is SQLite",
            "one writer at a time",
        ),
        (
            {"celery_broker_url": "sqla+sqlite:///var/celery-broker.sqlite"},
            "CELERY_BROKER_URL is a SQLite broker",
            "production needs Redis",
        ),
        # Without REDIS_URL and a broker URL the broker falls back to the SQLite file too.
        ({"redis_url": None}, "REDIS_URL is not set", "multiplying BINANCE_WEIGHT_PER_MINUTE"),
        ({"metrics_port": 0}, "METRICS_PORT is not set", "public API port"),
    ],
)
def test_production_refuses_an_unsafe_setting_naming_it_and_why(
    change: dict[str, object], named: str, why: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**{**PRODUCTION, **change})
    message = str(refused.value)
    assert "ENVIRONMENT=production refuses" in message
    assert named in message and why in message


def test_production_lists_every_unsafe_setting_at_once() -> None:
    # The embedded defaults: SQLite database and broker, no Redis, metrics on the API port.
    with pytest.raises(ValidationError) as refused:
        Settings(environment="production", fernet_keys=PRODUCTION["fernet_keys"])
    message = str(refused.value)
    for named in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "METRICS_PORT"):
        assert f"{named} is" in message


def test_development_keeps_the_embedded_defaults() -> None:
    settings = Settings()
    assert settings.database_url.startswith("sqlite")
    assert settings.broker_url.startswith("sqla+sqlite")


@pytest.mark.parametrize(
    ("visibility", "hard", "soft", "named"),
    [
        (300, 300, 240, "CELERY_VISIBILITY_TIMEOUT_S (300) must exceed CELERY_TASK_TIME_LIMIT_S"),
        (600, 900, 240, "CELERY_VISIBILITY_TIMEOUT_S (600) must exceed CELERY_TASK_TIME_LIMIT_S"),
        (600, 300, 300, "CELERY_TASK_SOFT_TIME_LIMIT_S (300) must be below"),
    ],
)
def test_redelivery_must_wait_out_the_hard_time_limit(
    visibility: int, hard: int, soft: int, named: str
) -> None:
    # Redis would hand a task that is still running to a second worker.
    with pytest.raises(ValidationError, match=re.escape(named)):
        Settings(
            celery_visibility_timeout_s=visibility,
            celery_task_time_limit_s=hard,
            celery_task_soft_time_limit_s=soft,
        )
