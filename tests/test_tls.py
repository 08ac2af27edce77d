"""`botmarket serve` over HTTPS: TLS 1.3 when the client has it, 1.2 at least, never older."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import running
from tests.sandbox_server import free_port

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key: (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def https_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """`botmarket serve` with a certificate made here, in development settings: (port, cert)."""
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = self_signed_certificate(directory)
    port = free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--host", LOOPBACK, "--port", str(port)]
    command += ["--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file)]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}

    def listening() -> bool:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
        except OSError:
            return False
        return True

    with running(command, listening, "the API", cwd=directory, env=env):
        yield port, cert_file


def client_context(cert_file: Path, newest: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert_file))
    if newest is not None:
        context.maximum_version = newest
    return context


def get_live(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    """GET /health/live over TLS: (the negotiated TLS version, the status line)."""
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=LOOPBACK) as tls,
    ):
        tls.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
        return str(tls.version()), answer.split(b"\r\n", 1)[0].decode()


def test_a_modern_client_gets_tls_1_3(https_api: tuple[int, Path]) -> None:
    port, cert_file = https_api
    assert get_live(port, client_context(cert_file)) == ("TLSv1.3", "HTTP/1.1 200 OK")


def test_a_tls_1_2_client_is_served(https_api: tuple[int, Path]) -> None:
    port, cert_file = https_api
    context = client_context(cert_file, newest=ssl.TLSVersion.TLSv1_2)
    assert get_live(port, context) == ("TLSv1.2", "HTTP/1.1 200 OK")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_a_client_limited_to_tls_1_1_is_refused_by_the_server(https_api: tuple[int, Path]) -> None:
    port, cert_file = https_api
    context = client_context(cert_file, newest=ssl.TLSVersion.TLSv1_1)
    # This client's own OpenSSL would not offer TLS 1.1 at its default security level: lowered,
    # it does, and what refuses is the server's alert.
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError) as refused:
        get_live(port, context)
    # The server's alert, or its hang-up (asyncio's TLS transport closes on a failed
    # handshake); not this client's NO_PROTOCOLS_AVAILABLE before it sent anything.
    assert refused.value.reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNEXPECTED_EOF_WHILE_READING")


def test_only_one_of_the_certificate_and_its_key_is_refused(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--ssl-certfile", "cert.pem"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "--ssl-certfile and --ssl-keyfile go together" in refused.stderr


# -- the proxy in front of the API in docker compose -----------------------------------------

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_publishes_only_the_tls_proxy_in_front_of_the_api() -> None:
    services = COMPOSE["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    # The production shape publishes the proxy alone; a profile's service (the monitoring
    # profile's Grafana) only on the host's loopback.
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert published - profiled == {"proxy"}
    for name in published & profiled:
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:2")
    assert "443:443" in proxy["ports"] and "80:80" in proxy["ports"]  # 80: ACME's challenge
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    api = services["api"]
    port = api["command"][api["command"].index("--port") + 1]
    assert port in api["expose"]
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert f"reverse_proxy api:{port}" in caddyfile


def test_the_caddyfile_has_a_real_and_a_self_signed_certificate_both_from_tls_1_2() -> None:
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "import tls-{$CADDY_TLS:acme}" in caddyfile
    for snippet in ("(tls-acme)", "(tls-internal)"):
        block = caddyfile.split(snippet, 1)[1].split("\n}\n", 1)[0]
        assert "protocols tls1.2 tls1.3" in block
    assert "tls internal" in caddyfile.split("(tls-internal)", 1)[1]
