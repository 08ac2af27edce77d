"""Load check of the gateway: wrk against an authenticated GET and against /health/live.

Starts `botmarket serve` (one uvicorn process) on a fresh database, creates a key and a few
bots, and prints wrk's figures and the ratio of the two. Needs `wrk` (Debian: apt-get install
wrk). Usage: python bench/api_load.py [--database-url URL] [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrk(url: str, key: str | None, seconds: int, connections: int) -> tuple[float, str]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if key:
        command[1:1] = ["-H", f"X-API-Key: {key}"]
    shown = " ".join(command).replace(key or "\0", "$KEY")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    print(f"$ {shown}\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, "wrk printed no Requests/sec"
    if "Non-2xx" in output:
        raise SystemExit("some responses were not 2xx: the figures would be meaningless")
    return float(match.group(1)), shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="botmarket-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        "FERNET_KEYS": f"bench:{Fernet.generate_key().decode()}",
        "RATE_LIMIT_PER_MINUTE": str(10**9),  # measure the gateway, not the limiter's refusals
    }
    subprocess.run([BIN / "botmarket", "migrate"], env=env, check=True, capture_output=True)
    created = subprocess.run(
        [BIN / "botmarket", "api-keys", "create", "--name", "bench", "--scope", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = created.stdout.strip().splitlines()[-1]
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
        for n in range(10):
            httpx.post(f"{base}/api/v1/bots", json={"name": f"bot {n}"}, headers={"X-API-Key": key})
        print(f"one uvicorn process, database {env['DATABASE_URL'].split(':')[0]}\n")
        authed, _ = wrk(f"{base}/api/v1/bots?limit=10", key, args.seconds, args.connections)
        bare, _ = wrk(f"{base}/health/live", None, args.seconds, args.connections)
        print(f"authenticated GET /api/v1/bots?limit=10: {authed:.0f} req/s")
        print(f"GET /health/live (no auth, no database):  {bare:.0f} req/s")
        print(f"ratio authenticated/bare: {authed / bare:.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
