#!/usr/bin/env python
"""Benchmark GreenGate against the mock upstream it fronts, and against that upstream directly.

Self-contained: sets up its own data directory (data/bench, embedded PostgreSQL unless DATABASE_URL is set),
starts the mock upstream and a GreenGate server on free ports, measures, and stops both. Only 127.0.0.1 is
contacted. Results go to stdout as a table and to bench-results/latest.json.

    python scripts/bench.py [--quick]

Exit status is non-zero if GreenGate fails the concurrency proof or any request fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data" / "bench"
RESULTS_FILE = ROOT / "bench-results" / "latest.json"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Counts:
    """How much traffic each measurement sends; tune here."""

    warmup: int = 50  # per target, before anything is measured
    burst: int = 200  # requests fired at once in the concurrency proof
    sequential: int = 300  # requests at concurrency 1
    workers: int = 32  # concurrency of the throughput run
    per_worker: int = 60  # sequential requests each worker sends


FULL = Counts()
QUICK = Counts(warmup=20, burst=200, sequential=60, workers=32, per_worker=10)

BURST_LATENCY_S = 1  # upstream latency in the concurrency proof
BURST_LIMIT_S = 3.0  # GreenGate must finish the whole burst within this
REQUEST_TIMEOUT_S = 30.0
STARTUP_TIMEOUT_S = 60.0  # the first run also initialises the embedded PostgreSQL
SETUP_TIMEOUT_S = 120.0
LOG_LINE_CHARS = 300  # some log lines (asyncio's "Unclosed connector") list every connection

FAST_MODEL = "bench-0ms"
SLOW_MODEL = "bench-1s"
PROMPT = "Benchmark prompt: say something short."
TENANT_SLUG = "bench"
# High enough that no plan limit ever shapes the numbers.
BENCH_RATE_LIMIT_PER_MINUTE = 1_000_000

MODES = ("json", "stream")
TARGETS = ("direct", "greengate")

# Run by the interpreter under test with Django set up: tenant, fresh key and routes, idempotently.
# argv: the JSON {model: base_url} routes. Prints {"key": secret} as its last line.
SETUP_SNIPPET = f"""
import json, sys
import django
django.setup()
from django.db import transaction
from providers.models import Deployment, Provider
from tenants.models import ApiKey, Plan, Tenant
from tenants.services import api_key_create, api_key_revoke

routes = json.loads(sys.argv[1])
with transaction.atomic():
    plan, _ = Plan.objects.update_or_create(
        name="bench", defaults={{"rate_limit_per_minute": {BENCH_RATE_LIMIT_PER_MINUTE}}}
    )
    tenant, _ = Tenant.objects.update_or_create(
        slug="{TENANT_SLUG}", defaults={{"name": "Benchmark", "plan": plan, "is_active": True}}
    )
    for old in ApiKey.objects.usable().filter(tenant=tenant):
        api_key_revoke(key=old)  # each run's key replaces the last one
    for model, base_url in routes.items():
        provider, _ = Provider.objects.update_or_create(
            name=model,
            defaults={{"kind": "openai", "base_url": base_url, "api_key": "sk-bench", "is_enabled": True,
                       "allow_private_network": True}},
        )
        Deployment.objects.update_or_create(
            model_name=model, provider=provider, upstream_model=model,
            defaults={{"priority": 0, "weight": 1, "is_enabled": True, "first_byte_timeout": 30.0,
                       "total_timeout": 30.0}},
        )
        # Only the mock may answer for a bench model.
        Deployment.objects.filter(model_name=model).exclude(provider=provider).update(is_enabled=False)
    _, secret = api_key_create(tenant=tenant, name="bench")
print(json.dumps({{"key": secret}}))
"""


# --- Environment and processes ------------------------------------------------


def bench_env() -> dict[str, str]:
    """The servers' environment: isolated data, quiet logs; a user's DATABASE_URL / REDIS_URL still apply."""
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(DATA_DIR),
        LOG_LEVEL="warning",
        DJANGO_SETTINGS_MODULE="greengate_site.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def free_ports(count: int) -> list[int]:
    # All sockets are held open together so that the ports differ.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in socks]


def nproc() -> int:
    """CPUs this process may use, as `nproc` counts them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_checked(args: list[str], env: dict[str, str], what: str) -> str:
    """Run a set-up step; on failure show its output and stop."""
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        sys.exit(f"bench: {what} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def prepare_database(env: dict[str, str], mock_port: int) -> str:
    """Migrate, then create the bench tenant, routes and a fresh key; returns the key's secret."""
    run_checked([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env, "migrate")
    mock = f"http://{HOST}:{mock_port}"
    routes = {FAST_MODEL: f"{mock}/v1", SLOW_MODEL: f"{mock}/scenario/latency={BURST_LATENCY_S}/v1"}
    out = run_checked([sys.executable, "-c", SETUP_SNIPPET, json.dumps(routes)], env, "bench data set-up")
    return json.loads(out.strip().splitlines()[-1])["key"]


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_server(name: str, args: list[str], env: dict[str, str], health_url: str) -> Server:
    """Start a server process logging to data/bench/<name>.log and wait until health_url answers 200."""
    log_path = DATA_DIR / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start-up:\n{server.log_tail()}")
        if http_ok(health_url):
            return server
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"{name} did not become ready within {STARTUP_TIMEOUT_S:.0f}s:\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    # SIGTERM first: GreenGate drains its ledger writes and the embedded PostgreSQL is released cleanly.
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    """Stop every started server on the way out, whatever happened."""
    try:
        yield servers
    finally:
        for server in reversed(servers):
            stop_server(server)


def log_problems(server: Server) -> list[str]:
    """Warning-or-worse lines the server logged (LOG_LEVEL=warning, so that is everything it logged), cut short."""
    if not server.log_path.exists():
        return []
    lines = server.log_path.read_text(errors="replace").splitlines()
    return [line[:LOG_LINE_CHARS] for line in lines if line.strip()]


# --- Client -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    slow_headers: dict[str, str]  # extra headers for the 1 s-latency variant
    pid: int | None = None  # the serving process, whose CPU time is measured (GreenGate only)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process, all its threads, from /proc (Linux)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    failures: Counter[str] = field(default_factory=Counter)


def new_session() -> aiohttp.ClientSession:
    # limit=0: no client-side cap on connections, so the client never queues requests itself.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    )


def request_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


async def one_request(
    session: aiohttp.ClientSession, target: Target, body: bytes, stream: bool, headers: dict[str, str], sample: Sample
) -> None:
    """Send one completion, read it to the end, and record its latency or why it failed."""
    start = time.perf_counter()
    try:
        async with session.post(target.url, data=body, headers=headers) as response:
            payload = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        sample.failures[type(exc).__name__] += 1
        return
    elapsed = time.perf_counter() - start
    if response.status != 200:
        sample.failures[f"HTTP {response.status}"] += 1
    elif stream and b"data: [DONE]" not in payload:
        sample.failures["stream without [DONE]"] += 1
    elif not stream and b'"choices"' not in payload:
        sample.failures["body without choices"] += 1
    else:
        sample.latencies.append(elapsed)


def headers_for(target: Target, slow: bool) -> dict[str, str]:
    base = {"Content-Type": "application/json", **target.headers}
    return {**base, **target.slow_headers} if slow else base


async def run_workers(
    target: Target, mode: str, workers: int, per_worker: int, slow: bool = False
) -> tuple[Sample, float]:
    """`workers` concurrent loops of `per_worker` sequential requests; returns the sample and the wall time."""
    stream = mode == "stream"
    # The direct upstream ignores the model name; its latency comes from slow_headers.
    model = SLOW_MODEL if slow else FAST_MODEL
    body, headers, sample = request_body(model, stream), headers_for(target, slow), Sample()

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in range(per_worker):
            await one_request(session, target, body, stream, headers, sample)

    async with new_session() as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(workers)))
        wall = time.perf_counter() - start
    return sample, wall


async def warm_up(target: Target, count: int) -> None:
    # Lazy imports, connection pools and the config snapshot are loaded before anything is timed.
    workers = 5
    for mode in MODES:
        await run_workers(target, mode, workers=workers, per_worker=max(count // len(MODES) // workers, 1))


# --- Measurements -------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile, in milliseconds (0 when nothing succeeded)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1] * 1000


@dataclass
class BurstResult:
    target: str
    mode: str
    requests: int
    failures: dict[str, int]
    wall_s: float
    limit_s: float | None  # only GreenGate is held to the limit

    @property
    def passed(self) -> bool | None:
        if self.limit_s is None:
            return None
        return self.wall_s <= self.limit_s and not self.failures


@dataclass
class LoadResult:
    target: str
    mode: str
    concurrency: int
    requests: int
    failures: dict[str, int]
    wall_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    # The serving process's CPU time per request (all threads), where it is known.
    cpu_ms_per_request: float | None = None


async def measure_burst(target: Target, mode: str, count: int) -> BurstResult:
    """All requests at once against the 1 s upstream: one worker each."""
    sample, wall = await run_workers(target, mode, workers=count, per_worker=1, slow=True)
    limit = BURST_LIMIT_S if target.name == "greengate" else None
    return BurstResult(target.name, mode, count, dict(sample.failures), round(wall, 3), limit)


async def measure_load(target: Target, mode: str, workers: int, per_worker: int) -> LoadResult:
    cpu_before = cpu_seconds(target.pid)
    sample, wall = await run_workers(target, mode, workers, per_worker)
    cpu_after = cpu_seconds(target.pid)
    total = workers * per_worker
    cpu_ms = None
    if cpu_before is not None and cpu_after is not None and sample.latencies:
        cpu_ms = round((cpu_after - cpu_before) * 1000 / len(sample.latencies), 2)
    return LoadResult(
        target=target.name,
        mode=mode,
        concurrency=workers,
        requests=total,
        failures=dict(sample.failures),
        wall_s=round(wall, 3),
        rps=round(len(sample.latencies) / wall, 1),
        p50_ms=round(percentile(sample.latencies, 50), 2),
        p99_ms=round(percentile(sample.latencies, 99), 2),
        cpu_ms_per_request=cpu_ms,
    )


@dataclass
class Comparison:
    mode: str
    concurrency: int
    added_p50_ms: float
    added_p99_ms: float
    rps_ratio: float


def compare(loads: list[LoadResult]) -> list[Comparison]:
    """GreenGate minus direct, per mode and concurrency."""
    by_key = {(r.target, r.mode, r.concurrency): r for r in loads}
    out = []
    for (target, mode, concurrency), gateway in by_key.items():
        direct = by_key.get(("direct", mode, concurrency))
        if target != "greengate" or direct is None:
            continue
        out.append(
            Comparison(
                mode=mode,
                concurrency=concurrency,
                added_p50_ms=round(gateway.p50_ms - direct.p50_ms, 2),
                added_p99_ms=round(gateway.p99_ms - direct.p99_ms, 2),
                rps_ratio=round(gateway.rps / direct.rps, 3) if direct.rps else 0.0,
            )
        )
    return out


async def run_all(targets: list[Target], counts: Counts, progress: Callable[[str], None]) -> dict[str, Any]:
    bursts: list[BurstResult] = []
    loads: list[LoadResult] = []
    for target in targets:
        progress(f"warming up {target.name}")
        await warm_up(target, counts.warmup)
        for mode in MODES:
            progress(f"{target.name} {mode}: {counts.burst} at once, upstream latency {BURST_LATENCY_S} s")
            bursts.append(await measure_burst(target, mode, counts.burst))
            progress(f"{target.name} {mode}: {counts.sequential} sequential")
            loads.append(await measure_load(target, mode, 1, counts.sequential))
            progress(f"{target.name} {mode}: {counts.workers} workers x {counts.per_worker}")
            loads.append(await measure_load(target, mode, counts.workers, counts.per_worker))
    return {"bursts": bursts, "loads": loads, "comparisons": compare(loads)}


# --- Report -------------------------------------------------------------------


def failures_text(failures: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in failures.items())


def render(meta: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [
        f"GreenGate benchmark   {meta['date']}   nproc {meta['nproc']}   Python {meta['python']}   ({meta['run']} run)",
        "",
        f"Concurrency proof: {meta['counts']['burst']} requests at once, upstream latency {BURST_LATENCY_S} s "
        f"(GreenGate must finish within {BURST_LIMIT_S:.1f} s)",
        f"{'target':<10} {'mode':<7} {'requests':>8} {'failed':>6} {'wall s':>8}  result",
    ]
    for b in results["bursts"]:
        verdict = "-" if b.passed is None else ("PASS" if b.passed else "FAIL")
        lines.append(
            f"{b.target:<10} {b.mode:<7} {b.requests:>8} {sum(b.failures.values()):>6} {b.wall_s:>8.2f}  {verdict}"
        )
    lines += [
        "",
        "Throughput and latency, upstream latency 0",
        f"{'target':<10} {'mode':<7} {'conc':>4} {'requests':>8} {'failed':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'CPU ms/req':>10}",
    ]
    for r in sorted(results["loads"], key=lambda r: (r.concurrency, r.mode, r.target)):
        cpu = "-" if r.cpu_ms_per_request is None else f"{r.cpu_ms_per_request:.2f}"
        lines.append(
            f"{r.target:<10} {r.mode:<7} {r.concurrency:>4} {r.requests:>8} {sum(r.failures.values()):>6} "
            f"{r.rps:>9.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {cpu:>10}"
        )
    lines += [
        "",
        "GreenGate overhead (GreenGate minus direct upstream)",
        f"{'mode':<7} {'conc':>4} {'+p50 ms':>9} {'+p99 ms':>9} {'rps ratio':>10}",
    ]
    for c in sorted(results["comparisons"], key=lambda c: (c.concurrency, c.mode)):
        lines.append(
            f"{c.mode:<7} {c.concurrency:>4} {c.added_p50_ms:>9.2f} {c.added_p99_ms:>9.2f} {c.rps_ratio:>10.3f}"
        )
    spool = results.get("spool")
    if spool:
        lines += [
            "",
            f"Ledger spool, per request: {spool['encode_us'] + spool['append_us']:.1f} us on the event loop "
            f"(encode {spool['encode_us']:.1f} us + write {spool['append_us']:.1f} us, {spool['row_bytes']} bytes)",
        ]
    failed = [r for r in [*results["bursts"], *results["loads"]] if r.failures]
    if failed:
        lines += ["", "Failed requests:"]
        for r in failed:
            conc = getattr(r, "concurrency", r.requests)
            lines.append(f"  {r.target} {r.mode} concurrency {conc}: {failures_text(r.failures)}")
    return "\n".join(lines)


def write_json(meta: dict[str, Any], results: dict[str, Any], problems: list[str], ok: bool) -> None:
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    bursts = [{**asdict(b), "passed": b.passed} for b in results["bursts"]]
    document = {
        **meta,
        "ok": ok,
        "bursts": bursts,
        "loads": [asdict(r) for r in results["loads"]],
        "comparisons": [asdict(c) for c in results["comparisons"]],
        "spool": results.get("spool"),
        "gateway_log_problems": problems,
    }
    RESULTS_FILE.write_text(json.dumps(document, indent=2) + "\n")


# --- Main ---------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller request counts, for a smoke run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = QUICK if args.quick else FULL
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": nproc(),
        "python": platform.python_version(),
        "run": "quick" if args.quick else "full",
        "counts": asdict(counts),
        "burst_latency_s": BURST_LATENCY_S,
        "burst_limit_s": BURST_LIMIT_S,
    }

    def progress(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    env = bench_env()
    mock_port, gateway_port = free_ports(2)
    progress("migrating and creating the bench tenant, key and routes")
    secret = prepare_database(env, mock_port)

    with running([]) as servers:
        progress(f"starting mock upstream on {mock_port}")
        servers.append(
            start_server(
                "mock",
                [sys.executable, "-m", "tests.mock_upstream", "--host", HOST, "--port", str(mock_port)],
                env,
                f"http://{HOST}:{mock_port}/_health",
            )
        )
        progress(f"starting GreenGate on {gateway_port}")
        servers.append(
            start_server(
                "gateway",
                [sys.executable, "-m", "greengate_site.server"],
                {**env, "HOST": HOST, "PORT": str(gateway_port)},
                f"http://{HOST}:{gateway_port}/healthz",
            )
        )
        targets = [
            Target(
                name="direct",
                url=f"http://{HOST}:{mock_port}/v1/chat/completions",
                headers={},
                slow_headers={"X-Mock-Latency": str(BURST_LATENCY_S)},
            ),
            Target(
                name="greengate",
                url=f"http://{HOST}:{gateway_port}/v1/chat/completions",
                headers={"Authorization": f"Bearer {secret}"},
                slow_headers={},
                pid=servers[1].process.pid,
            ),
        ]
        results = asyncio.run(run_all(targets, counts, progress))
        gateway = servers[1]
    problems = log_problems(gateway)  # read after shutdown, so the drain on SIGTERM is included

    progress("timing the ledger spool (what the crash guarantee costs a request)")
    spool = json.loads(run_checked([sys.executable, str(ROOT / "scripts" / "spool_bench.py")], env, "spool bench"))
    results["spool"] = spool

    any_failures = any(r.failures for r in [*results["bursts"], *results["loads"]])
    proof_ok = all(b.passed is not False for b in results["bursts"])
    ok = proof_ok and not any_failures
    print(render(meta, results))
    if problems:
        print(f"\nGreenGate logged {len(problems)} warning/error line(s) (see {gateway.log_path}); first:")
        for line in problems[:5]:
            print(f"  {line}")
    write_json(meta, results, problems, ok)
    print(f"\nResults written to {RESULTS_FILE.relative_to(ROOT)}")
    if not ok:
        why = "concurrency proof failed" if not proof_ok else "some requests failed"
        print(f"FAIL: {why}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
