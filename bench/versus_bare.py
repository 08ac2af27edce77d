"""The API against the bare FastAPI app of bench/gateway_baseline.py, as bench/gateway.py and
bench/events.py measure it: both under `uvicorn --workers 2` with the same flags, `wrk -t2`
with Lua scripts that cycle through paths, principals and keys, rounds that alternate the
order so that drift of a shared machine weighs on both sides, each run's CPU per request
(the server's worker processes), and the medians with each run's ratio to the bare app's.

Imported by the scripts (run as `python bench/<name>.py`, so this directory is on the import
path).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from common import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BASELINE = "baseline"


@dataclass
class Server:
    url: str
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds its worker processes have used: the cost of a request, which the
        machine's other load slows down but does not change."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for child in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split():
            stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / tick  # utime + stime
        return total


@contextlib.contextmanager
def uvicorn(
    factory: str, env: dict[str, str], log: Path, ready_path: str, app_dir: Path
) -> Iterator[Server]:
    """`--workers 2` uvicorn serving `factory` on a free port, until the block ends."""
    port = free_port()
    command = [
        str(BIN / "uvicorn"),
        "--factory",
        factory,
        "--app-dir",
        str(app_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        # The API writes its own access line (with the request id); uvicorn's would repeat it.
        "--no-access-log",
    ]
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + ready_path).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{factory} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield Server(base, process.pid)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# -- load ------------------------------------------------------------------------------------

_LUA = """
local items = {%(items)s}
local threads = 0
function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end
function init(args)
  n = offset or 0
end
function request()
  n = n + 1
  local item = items[(n %% #items) + 1]
  local headers = {["X-API-Key"] = item[3]}
  if item[2] ~= "" then
    headers["X-Principal-ID"] = item[2]
  end
  return wrk.format("GET", item[1], headers)
end
"""


def lua_script(path: Path, keys: list[str], items: list[tuple[str, str]]) -> Path:
    """A wrk script cycling through (path, principal or "") in the given order, the n-th item
    sent with the n-th key (the keys repeating)."""
    if len(items) < len(keys):  # every key gets its share of the requests
        items = [items[n % len(items)] for n in range(len(keys))]
    body = ",".join(
        f"{{{json.dumps(p)},{json.dumps(principal)},{json.dumps(keys[n % len(keys)])}}}"
        for n, (p, principal) in enumerate(items)
    )
    path.write_text(_LUA % {"items": body})
    return path


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    # A slow answer is counted in the percentiles, not dropped as a timeout at wrk's 2 s.
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        assert match, f"wrk printed no {label} latency:\n{output}"
        return round(float(match.group(1)) * _UNITS_MS[match.group(2)], 2)

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rate, f"wrk printed no Requests/sec:\n{output}"
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return {
        "req_s": round(float(rate.group(1)), 1),
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "errors": errors,
    }


# -- rounds ----------------------------------------------------------------------------------


@contextlib.contextmanager
def bare_and_api(env: dict[str, str], workdir: Path) -> Iterator[tuple[Server, Server]]:
    """The bare app (it answers GET /api/v1/subscriptions/{id}) and the API, side by side."""
    with (
        uvicorn(
            "gateway_baseline:create_app",
            env,
            workdir / "baseline.log",
            "/api/v1/subscriptions/x",
            ROOT / "bench",
        ) as bare,
        uvicorn("app.main:create_app", env, workdir / "api.log", "/health/ready", ROOT) as api,
    ):
        yield bare, api


# A run: the server it loads, and what loads it for so many seconds (its figures: req_s,
# p50_ms, p99_ms, errors, and what else it counts).
Run = tuple[Server, Callable[[int], dict[str, float]]]


def alternate(
    runs: dict[str, Run], rounds: int, seconds: int, warm: Collection[str]
) -> dict[str, list[dict[str, float]]]:
    """Each run once a round for `seconds`, the order reversed every other round, after two
    seconds of each run named in `warm` (caches and pools); each result with `cpu_ms`."""
    for name in warm:
        runs[name][1](2)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    order = list(runs)
    for n in range(rounds):
        for name in order if n % 2 == 0 else order[::-1]:
            server, load = runs[name]
            cpu_before, started = server.cpu_s(), time.monotonic()
            result = load(seconds)
            served = result["req_s"] * (time.monotonic() - started)
            result["cpu_ms"] = round(1000 * (server.cpu_s() - cpu_before) / served, 3)
            print(f"  round {n + 1}: {name} {result}", file=sys.stderr)
            results[name].append(result)
    return results


def medians(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Each run's median figures over the rounds, its errors summed, its req/s per round,
    and its ratio to the bare app's median req/s (the run named BASELINE)."""
    summary: dict[str, dict[str, Any]] = {}
    for name, rounds in results.items():
        figures: dict[str, Any] = {
            field: round(statistics.median(r[field] for r in rounds), 2)
            for field in ("req_s", "p50_ms", "p99_ms", "cpu_ms")
        }
        figures["errors"] = sum(int(r["errors"]) for r in rounds)
        figures["rounds_req_s"] = [r["req_s"] for r in rounds]
        summary[name] = figures
    bare = summary[BASELINE]["req_s"]
    for figures in summary.values():
        figures["ratio"] = round(figures["req_s"] / bare, 3)
    return summary
