"""The sandbox's operator paths answer loopback clients, others only with the operator token;
and the sandbox does not start in production."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.sandbox.server import OPERATOR_TOKEN_HEADER, create_sandbox_app
from tests.helpers import running
from tests.sandbox_server import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "operator-token-for-this-test"
OPERATOR_CALLS = [
    ("POST", "/sandbox/accounts", {"api_key": "k", "api_secret": "s", "balances": {}}),
    ("POST", "/sandbox/config", {"weight_per_minute": 6000}),
    ("POST", "/sandbox/faults", {"latency_ms": 0}),
    ("DELETE", "/sandbox/faults", None),
    ("GET", "/sandbox/orders?api_key=k", None),
    ("GET", "/sandbox/stats", None),
    ("POST", "/sandbox/streams/drop", None),
    ("POST", "/sandbox/streams/pause", {"symbol": "BTCUSDT", "paused": False}),
    ("POST", "/sandbox/market/jump", {"symbol": "BTCUSDT", "percent": "1"}),
]


def _client(address: str, token: str | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(
        app=create_sandbox_app([("k", "s", {})], operator_token=token), client=(address, 40000)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://sandbox")


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_CALLS)
async def test_a_remote_client_needs_the_operator_token(
    method: str, path: str, body: dict[str, object] | None
) -> None:
    async with _client("203.0.113.9", TOKEN) as remote:
        refused = await remote.request(method, path, json=body)
        assert refused.status_code == 403
        assert OPERATOR_TOKEN_HEADER in refused.json()["msg"]
        wrong = await remote.request(method, path, json=body, headers={OPERATOR_TOKEN_HEADER: "x"})
        assert wrong.status_code == 403
        allowed = await remote.request(
            method, path, json=body, headers={OPERATOR_TOKEN_HEADER: TOKEN}
        )
        assert allowed.status_code == 200
        # Binance's own paths stay open to everyone.
        assert (await remote.get("/api/v3/ping")).status_code == 200


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1"])
async def test_loopback_clients_need_no_token(address: str) -> None:
    async with _client(address) as local:
        assert (await local.get("/sandbox/stats")).status_code == 200


async def test_without_a_configured_token_no_remote_client_gets_in() -> None:
    async with _client("203.0.113.9") as remote:
        empty = await remote.get("/sandbox/stats", headers={OPERATOR_TOKEN_HEADER: ""})
        assert empty.status_code == 403


def _sandbox_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "app.cli", "sandbox", "--host", host, "--port", str(port)]


def _environment(**settings: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **settings}


def _this_hosts_address() -> str:
    """An address of this host other than loopback: the one its default route leaves from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            pytest.skip("this host has no address but loopback")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this host has no address but loopback")
    return address


@pytest.fixture
def sandbox_on_every_interface(tmp_path: Path) -> Iterator[int]:
    port = free_port()

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v3/ping", timeout=1).is_success
        except httpx.TransportError:
            return False

    command = _sandbox_command("0.0.0.0", port)
    env = _environment(SANDBOX_OPERATOR_TOKEN=TOKEN)
    with running(command, ready, "the sandbox", cwd=tmp_path, env=env):
        yield port


def test_botmarket_sandbox_keeps_its_operator_paths_from_other_hosts(
    sandbox_on_every_interface: int,
) -> None:
    port = sandbox_on_every_interface
    remote = f"http://{_this_hosts_address()}:{port}"
    assert httpx.get(f"{remote}/api/v3/ping").status_code == 200
    assert httpx.get(f"{remote}/sandbox/stats").status_code == 403
    with_token = httpx.get(f"{remote}/sandbox/stats", headers={OPERATOR_TOKEN_HEADER: TOKEN})
    assert with_token.status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/sandbox/stats").status_code == 200


def test_botmarket_sandbox_refuses_production(tmp_path: Path) -> None:
    refused = subprocess.run(
        _sandbox_command("127.0.0.1", free_port()),
        cwd=tmp_path,
        env=_environment(
            ENVIRONMENT="production",
            DATABASE_URL="mysql+asyncmy://u:p@db/botmarket",
            REDIS_URL="redis://redis:6379/0",
            FERNET_KEYS="k1:" + "A" * 43 + "=",
            SIGNING_KEYS="k1:" + "A" * 43 + "=",
            METRICS_PORT="9100",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "refuses to start under ENVIRONMENT=production" in refused.stderr


async def test_a_token_that_is_not_ascii_is_refused_not_a_server_error() -> None:
    # Headers arrive as latin-1: any byte may be sent, and a str compare would raise on it.
    async with _client("203.0.113.9", TOKEN) as remote:
        odd = await remote.get(
            "/sandbox/stats", headers={OPERATOR_TOKEN_HEADER: "jeton-\xe9".encode("latin-1")}
        )
    assert odd.status_code == 403
