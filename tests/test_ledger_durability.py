"""Exactly one ledger row per answered request, through `kill -9` of the gateway and PostgreSQL going away.

Each scenario drives real load (JSON and streams, concurrently) through a real GreenGate process, keeps the
request id of every request that was answered completely, then checks the database: every one has exactly
one row.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
from django.conf import settings

from tests.conftest import ROOT, RunningGateway, start_gateway, stop_gateway

PG_BIN = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
PG_BIN = PG_BIN / "site-packages" / "pgserver" / "pginstall" / "bin"


@dataclass
class Load:
    """Clients sending JSON and streamed completions until told to stop; what was answered in full."""

    url: str
    key: str
    answered: list[str] = field(default_factory=list)
    failed: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, clients: int = 16) -> None:
        async with httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=20
        ) as client:
            await asyncio.gather(*(self._client(client, stream=i % 2 == 1) for i in range(clients)))

    async def _client(self, client: httpx.AsyncClient, *, stream: bool) -> None:
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "count the joules"}]}
        while not self.stop.is_set():
            try:
                if stream:
                    async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                        text = "".join([chunk async for chunk in r.aiter_text()])
                        if r.status_code == 200 and text.rstrip().endswith("data: [DONE]"):
                            self.answered.append(r.headers["x-request-id"])
                            continue
                else:
                    r = await client.post("/v1/chat/completions", json=body)
                    if r.status_code == 200 and r.json()["choices"]:
                        self.answered.append(r.headers["x-request-id"])
                        continue
                self.failed += 1
            except (httpx.HTTPError, ValueError):
                self.failed += 1
                await asyncio.sleep(0.01)


async def load_until(load: Load, during: float, then=None) -> None:
    """Run the load for `during` seconds, call `then()` (still under load), and stop."""
    task = asyncio.create_task(load.run())
    await asyncio.sleep(during)
    if then is not None:
        await asyncio.to_thread(then)
    load.stop.set()
    await task


def rows_per_request(dsn: str, request_ids: list[str]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT request_id, count(*) FROM ledger_ledgerentry WHERE request_id = ANY(%s) GROUP BY request_id",
            [request_ids],
        ).fetchall()
    return dict(found)


def wait_for_every_row(dsn: str, request_ids: list[str], timeout: float = 60.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        found = rows_per_request(dsn, request_ids)
        if len(found) == len(set(request_ids)) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def spooled_bytes(spool: Path) -> int:
    return sum(p.stat().st_size for p in spool.rglob("*") if p.is_file())


def kill_9(gateway: RunningGateway) -> None:
    os.kill(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait(timeout=10)


# --- kill -9 against the suite's database -------------------------------------------------------------------


def test_every_request_answered_before_a_kill_9_has_exactly_one_row(transactional_db, api_key, route, tmp_path):
    from django.db import connection

    route("gpt-test", words=12, chunk_delay=0.001)
    spool = tmp_path / "spool"
    env = {"LEDGER_SPOOL_DIR": str(spool), "LEDGER_SPOOL_SCAN_SECONDS": "0.2"}
    first = start_gateway(env, log_name="kill9-first")
    load = Load(first.url, api_key)
    try:
        asyncio.run(load_until(load, 2.5, then=lambda: kill_9(first)))
    finally:
        if first.process.poll() is None:
            first.process.kill()
    assert len(load.answered) > 50, first.log()
    # The successor replays what the killed process had spooled but not yet written.
    second = start_gateway(env, log_name="kill9-second")
    try:
        params = connection.get_connection_params()
        dsn = psycopg.conninfo.make_conninfo(
            **{k: v for k, v in params.items() if k in {"dbname", "user", "host", "port", "password"}}
        )
        found = wait_for_every_row(dsn, load.answered)
        missing = set(load.answered) - set(found)
        assert not missing, f"{len(missing)} of {len(load.answered)} answered requests have no row"
        assert all(count == 1 for count in found.values())
        deadline = time.monotonic() + 20
        while spooled_bytes(spool) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert spooled_bytes(spool) == 0, "the spool still holds rows after they were written"
    finally:
        stop_gateway(second)


# --- PostgreSQL restarted, or down while the gateway dies ---------------------------------------------------


@dataclass
class ScratchStack:
    """A PostgreSQL of its own (so that it can be stopped) with GreenGate's schema, a key and a route."""

    pgdata: Path
    socket_dir: str
    system_user: str | None
    env: dict[str, str]
    key: str = ""

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} dbname=greengate user=postgres"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
            user=self.system_user,
        )

    def start_postgres(self) -> None:
        self.pg_ctl("-l", str(self.pgdata / "log"), "-o", '-h ""', "-o", f"-k {self.socket_dir}", "start")

    def stop_postgres(self) -> None:
        self.pg_ctl("-m", "fast", "stop")

    def manage(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


SETUP = """
from providers.models import Deployment, Provider
from tenants.services import api_key_create, plan_default, tenant_create
provider = Provider.objects.create(name="mock", kind="openai", base_url={base_url!r}, api_key="sk-upstream-test",
                                   allow_private_network=True)
Deployment.objects.create(model_name="gpt-test", provider=provider, upstream_model="gpt-test",
                          first_byte_timeout=10, total_timeout=10)
tenant = tenant_create(slug="finance", plan=plan_default(rate_limit_per_minute=100000))
print(api_key_create(tenant=tenant, name="load")[1])
"""


@pytest.fixture
def scratch(tmp_path, upstream) -> Iterator[ScratchStack]:
    import pgserver

    # pgserver runs PostgreSQL as an unprivileged user when the suite runs as root; the restarts below too.
    server = pgserver.get_server(tmp_path / "pg", cleanup_mode=None)
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgresql://postgres@{quote(socket_dir, safe='')}/greengate",
        "DATA_DIR": str(settings.DATA_DIR),
        "LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "LEDGER_SPOOL_SCAN_SECONDS": "0.2",
        # Most rows of an outage then wait on disk only, as in a long one.
        "LEDGER_MEMORY_ROWS": "20",
    }
    env.pop("GREENGATE_TEST_DATABASE", None)
    stack = ScratchStack(pgdata=server.pgdata, socket_dir=socket_dir, system_user=server.system_user, env=env)
    try:
        with psycopg.connect(f"host={socket_dir} dbname=postgres user=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE greengate")
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.key = stack.manage("shell", stdin=SETUP.format(base_url=upstream.base_url(words=12))).split()[-1]
        yield stack
    finally:
        try:
            stack.stop_postgres()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(server.pgdata, ignore_errors=True)


def scratch_gateway(stack: ScratchStack, name: str) -> RunningGateway:
    extra = {k: v for k, v in stack.env.items() if os.environ.get(k) != v}
    return start_gateway({**extra, "GREENGATE_TEST_DATABASE": ""}, log_name=name)


def test_a_postgres_restart_under_load_loses_and_duplicates_no_row(scratch):
    gateway = scratch_gateway(scratch, "pg-restart")

    def restart_postgres() -> None:
        scratch.stop_postgres()
        time.sleep(3)  # requests keep being answered meanwhile; their rows wait
        scratch.start_postgres()
        time.sleep(1)

    load = Load(gateway.url, scratch.key)
    try:
        asyncio.run(load_until(load, 1.0, then=restart_postgres))
        assert len(load.answered) > 50, gateway.log()
        found = wait_for_every_row(scratch.dsn, load.answered)
        missing = set(load.answered) - set(found)
        assert not missing, f"{len(missing)} of {len(load.answered)} answered requests have no row"
        assert all(count == 1 for count in found.values())
    finally:
        stop_gateway(gateway)


def test_rows_answered_while_postgres_is_down_survive_a_kill_9_of_the_gateway(scratch):
    first = scratch_gateway(scratch, "pg-down-first")
    load = Load(first.url, scratch.key)

    def outage_then_kill() -> None:
        scratch.stop_postgres()
        time.sleep(2)
        kill_9(first)

    try:
        asyncio.run(load_until(load, 0.5, then=outage_then_kill))
    finally:
        if first.process.poll() is None:
            first.process.kill()
    assert len(load.answered) > 50, first.log()
    scratch.start_postgres()
    second = scratch_gateway(scratch, "pg-down-second")
    try:
        found = wait_for_every_row(scratch.dsn, load.answered)
        missing = set(load.answered) - set(found)
        assert not missing, f"{len(missing)} of {len(load.answered)} answered requests have no row"
        assert all(count == 1 for count in found.values())
        assert "replayed from the spool" in second.log()
    finally:
        stop_gateway(second)
