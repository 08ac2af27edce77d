"""docker compose, checked without a Docker engine: every command is a real entry point of
this project and every service gets the settings it needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser
from app.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("api", "worker", "beat", "stream", "migration")


def substituted(value: str) -> str:
    """What compose makes of `${VAR:?message}` / `${VAR:-default}` with VAR set to a stand-in."""
    return re.sub(r"\$\{(\w+)(:[?-][^}]*)?\}", lambda m: f"stand-in-{m.group(1).lower()}", value)


def test_the_services_of_the_production_shape() -> None:
    # What a plain `docker compose up` starts: the monitoring profile's services are opt-in.
    assert {name for name, service in SERVICES.items() if "profiles" not in service} == {
        "api",
        "worker",
        "beat",
        "stream",
        "migration",
        "db",
        "redis",
        "proxy",
    }
    # The server line every MariaDB test of this suite runs on.
    assert SERVICES["db"]["image"] == "mariadb:10.11"
    assert SERVICES["redis"]["image"].startswith("redis:7")
    for name in ("db", "redis"):
        assert SERVICES[name]["healthcheck"]["test"]


def test_the_database_is_created_for_the_url_the_app_services_use() -> None:
    db = SERVICES["db"]
    env = {k: substituted(str(v)) for k, v in db["environment"].items()}
    # The mariadb image reads MARIADB_* (its MYSQL_* aliases are legacy).
    assert all(key.startswith("MARIADB_") for key in env)
    user, password, database = env["MARIADB_USER"], env["MARIADB_PASSWORD"], env["MARIADB_DATABASE"]
    for name in APP_SERVICES:
        url = substituted(str(SERVICES[name]["environment"]["DATABASE_URL"]))
        assert url == f"mysql+asyncmy://{user}:{password}@db:3306/{database}"
    # healthcheck.sh ships in the image; --connect waits for TCP, which the first-start
    # initialisation (socket only) does not serve.
    assert db["healthcheck"]["test"][:3] == ["CMD", "healthcheck.sh", "--connect"]


@pytest.mark.parametrize("name", ["api", "worker", "beat", "stream"])
def test_app_services_wait_for_health_and_the_migration(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert depends["db"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["migration"]["condition"] == "service_completed_successfully"
    assert SERVICES["migration"]["depends_on"]["db"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_command_is_a_real_entry_point(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[0] == "botmarket"
    # argparse exits on an unknown command; the worker's extra flags go on to celery.
    args, _ = build_parser().parse_known_args(command[1:])
    assert args.command == command[1]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_service_has_the_settings_it_needs(name: str) -> None:
    env = {k: substituted(str(v)) for k, v in SERVICES[name]["environment"].items()}
    for needed in (
        "ENVIRONMENT",
        "DATABASE_URL",
        "FERNET_KEYS",
        "SIGNING_KEYS",
        "REDIS_URL",
        "CELERY_BROKER_URL",
    ):
        assert env.get(needed), f"{name} lacks {needed}"
    assert env["DATABASE_URL"].startswith("mysql+asyncmy://")
    # The stand-in key is not a Fernet key; everything else must satisfy production settings.
    settings = Settings(
        **{k.lower(): v for k, v in env.items() if k != "FERNET_KEYS"},
        fernet_keys="k1:" + "A" * 43 + "=",
    )
    assert settings.environment.value == "production"
    assert settings.broker_url.startswith("redis://")


def test_the_image_is_multi_stage_and_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, flags=re.M)) >= 2
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in ("root", "0")


@pytest.mark.parametrize(
    ("name", "port"), [("api", "METRICS_PORT"), ("worker", "WORKER_METRICS_PORT")]
)
def test_metrics_are_exposed_to_the_scrapers_network_never_published(name: str, port: str) -> None:
    service = SERVICES[name]
    metrics_port = str(service["environment"][port])
    # Every interface of the container; the networks decide who reaches it.
    assert service["environment"]["METRICS_BIND"] == "0.0.0.0"
    assert metrics_port in service["expose"]
    published = [str(mapping).rsplit(":", 1)[-1] for mapping in service.get("ports", [])]
    assert metrics_port not in published
    assert "metrics" in service["networks"]
    assert COMPOSE["networks"]["metrics"]["internal"] is True
