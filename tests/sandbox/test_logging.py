"""`botmarket sandbox` logs JSON lines like the rest of the service: one log pipeline to collect."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.sandbox_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_standalone_sandbox_logs_json_lines(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.sandbox", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v3/ping").raise_for_status()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any("Uvicorn running" in line["message"] for line in lines), stderr
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line)
