"""Load check of the gateway: wrk against an authenticated GET and against /health/live, and
a renter's GET with a signed principal assertion verified against the same unsigned (two
marketplaces with the same renter's subscriptions: one whose mode is off, one that verifies).

Starts `botmarket serve` (one uvicorn process) on a fresh database, creates keys, a few bots
and a renter's subscriptions, and prints wrk's figures and the ratios. The two renter runs
alternate (off, required, required, off, ...) so that drift of a shared machine hits both;
each side's best round is compared. Needs `wrk` (Debian: apt-get install wrk).
Usage: python bench/api_load.py [--database-url URL] [--seconds 10] [--connections 32]
[--rounds 4]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import free_port
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.core.principal_assertions import (
    Algorithm,
    AssertionVerifier,
    RequestFacts,
    load_public_key,
)
from app.core.principals import encode_principal

ASSERTION_DOMAIN = b"botmarket-principal-assertion-v1\n"

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def wrk(
    url: str,
    key: str | None,
    seconds: int,
    connections: int,
    extra_headers: dict[str, str] | None = None,
) -> tuple[float, str]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if key:
        command[1:1] = ["-H", f"X-API-Key: {key}"]
    for name, value in (extra_headers or {}).items():
        command[1:1] = ["-H", f"{name}: {value}"]
    shown = " ".join(command).replace(key or "\0", "$KEY")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    print(f"$ {shown}\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, "wrk printed no Requests/sec"
    if "Non-2xx" in output:
        raise SystemExit("some responses were not 2xx: the figures would be meaningless")
    return float(match.group(1)), shown


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_assertion(signer: Ed25519PrivateKey, principal: str, key: str) -> dict[str, str]:
    """What the canister sends with each read: one signature per renter per 15 minutes."""
    now = int(time.time())
    claims = {
        "v": 1,
        "principal": principal,
        "api_key_prefix": key.split("_")[1],
        "iat": now,
        "exp": now + 900,
    }
    raw = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return {
        "X-Principal-Assertion": b64url(raw),
        "X-Principal-Signature": b64url(signer.sign(ASSERTION_DOMAIN + raw)),
    }


def verification_costs(signer: Ed25519PrivateKey, public: bytes, principal: str) -> None:
    """The CPU cost of the check itself, free of the load generator's and the machine's noise:
    a cache miss verifies the signature, a hit only compares fields."""
    key = "bmk_benchkey_x"
    headers = session_assertion(signer, principal, key)
    facts = RequestFacts(principal, "benchkey", False, "GET", "/", b"", None)
    keys = (load_public_key("k", Algorithm.ed25519, public),)
    args = (headers["X-Principal-Assertion"], headers["X-Principal-Signature"], keys, facts)
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        AssertionVerifier().verify(*args)
    miss = (time.perf_counter() - started) / n
    verifier = AssertionVerifier()
    started = time.perf_counter()
    for _ in range(n * 10):
        verifier.verify(*args)
    hit = (time.perf_counter() - started) / (n * 10)
    print(f"assertion check, Ed25519: {miss * 1e6:.1f} us uncached, {hit * 1e6:.2f} us cached")


def paired_latencies(
    url: str, sides: dict[str, tuple[str, dict[str, str]]], pairs: int = 500
) -> None:
    """One request of each side in turn on one connection: drift of a shared machine, which
    swamps wrk's throughput figures, cancels out at this grain."""
    latencies: dict[str, list[float]] = {side: [] for side in sides}
    with httpx.Client() as http:
        for _ in range(pairs):
            for side, (key, extra) in sides.items():
                started = time.perf_counter()
                http.get(url, headers={"X-API-Key": key, **extra}).raise_for_status()
                latencies[side].append(time.perf_counter() - started)
    median = {side: statistics.median(values) for side, values in latencies.items()}
    print(
        f"{pairs} alternating requests each, median latency: off {median['off'] * 1e3:.2f} ms, "
        f"required {median['required'] * 1e3:.2f} ms, ratio required/off "
        f"{median['required'] / median['off']:.3f}"
    )


def create_key(env: dict[str, str], scope: str, *extra: str) -> str:
    created = subprocess.run(
        [
            BIN / "botmarket",
            "api-keys",
            "create",
            "--name",
            f"bench {scope}",
            "--scope",
            scope,
            *extra,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return created.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="botmarket-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        "FERNET_KEYS": f"bench:{Fernet.generate_key().decode()}",
        "RATE_LIMIT_PER_MINUTE": str(10**9),  # measure the gateway, not the limiter's refusals
        # The code of this checkout, even when the environment's editable install is another.
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run([BIN / "botmarket", "migrate"], env=env, check=True, capture_output=True)
    key = create_key(env, "admin")
    signer = Ed25519PrivateKey.generate()
    public = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    unsigned_key = create_key(env, "marketplace")
    # A marketplace of its own (assertion rules are a marketplace's), in optional mode: the
    # renter's subscriptions are made there unsigned, and every signed read is verified as in
    # required mode.
    signed_key = create_key(
        env,
        "marketplace",
        *("--marketplace", "signed", "--assertion-mode", "optional"),
        *("--assertion-key", base64.b64encode(public).decode()),
    )
    principal = encode_principal(hashlib.sha256(b"bench renter").digest()[:10])
    port = free_port()
    server = subprocess.Popen(
        [BIN / "botmarket", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not become ready in 30 s")
            time.sleep(0.2)
        bots = [
            httpx.post(f"{base}/api/v1/bots", json={"name": f"bot {n}"}, headers={"X-API-Key": key})
            for n in range(10)
        ]
        for bot, marketplace_key in itertools.product(
            bots[:5], (("default", unsigned_key), ("signed", signed_key))
        ):
            marketplace, renter_key = marketplace_key
            httpx.post(
                f"{base}/api/v1/bots/{bot.json()['id']}/registrations",
                json={"price": "0", "marketplace": marketplace},
                headers={"X-API-Key": key},
            ).raise_for_status()  # renters subscribe to listed bots only
            subscription = {
                "bot_id": bot.json()["id"],
                "symbol": "BTCUSDT",
                "timeframe": "1h",
                "mode": "paper",
                "quote_amount": "100",
            }
            httpx.post(
                f"{base}/api/v1/subscriptions",
                json=subscription,
                headers={"X-API-Key": renter_key, "X-Principal-ID": principal},
            ).raise_for_status()
        print(f"one uvicorn process, database {env['DATABASE_URL'].split(':')[0]}\n")
        authed, _ = wrk(f"{base}/api/v1/bots?limit=10", key, args.seconds, args.connections)
        bare, _ = wrk(f"{base}/health/live", None, args.seconds, args.connections)
        print(f"authenticated GET /api/v1/bots?limit=10: {authed:.0f} req/s")
        print(f"GET /health/live (no auth, no database):  {bare:.0f} req/s")
        print(f"ratio authenticated/bare: {authed / bare:.2f}\n")

        renter_url = f"{base}/api/v1/subscriptions?limit=10"
        sides = {
            "off": (unsigned_key, {"X-Principal-ID": principal}),
            "required": (
                signed_key,
                {"X-Principal-ID": principal, **session_assertion(signer, principal, signed_key)},
            ),
        }
        runs: dict[str, list[float]] = {"off": [], "required": []}
        for n in range(args.rounds):
            # off-required, then required-off: a machine slowing down or speeding up during
            # the run weighs on both sides alike.
            for side in ("off", "required") if n % 2 == 0 else ("required", "off"):
                key_of_side, side_headers = sides[side]
                runs[side].append(
                    wrk(renter_url, key_of_side, args.seconds, args.connections, side_headers)[0]
                )
        off, required = max(runs["off"]), max(runs["required"])
        rounds = ", ".join(
            f"{o:.0f}/{r:.0f}" for o, r in zip(runs["off"], runs["required"], strict=True)
        )
        print(f"renter GET /api/v1/subscriptions?limit=10, rounds off/required: {rounds}")
        print(f"  assertions off:      {off:.0f} req/s (best round)")
        print(f"  assertions required: {required:.0f} req/s (best round)")
        print(
            f"ratio required/off: {required / off:.3f} (best rounds), "
            f"{sum(runs['required']) / sum(runs['off']):.3f} (all rounds)"
        )
        paired_latencies(renter_url, sides)
        verification_costs(signer, public, principal)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
