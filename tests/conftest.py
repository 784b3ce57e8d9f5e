"""Shared fixtures: the mock upstream, a real GreenGate server process, tenants, keys and routes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from playwright.sync_api import Browser, Page, sync_playwright

from greengate_site.redis import clients as redis_clients
from ledger.models import LedgerEntry
from tenants.services import api_key_create
from tests.factories import DeploymentFactory, ProviderFactory, TenantFactory
from tests.mock_upstream import MockUpstream

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TEST_KEY_PREFIX_START = "greengate-test-"


@pytest.fixture(scope="session", autouse=True)
def _redis_keys_of_this_run() -> Iterator[None]:
    """The run owns only the keys under its own prefix (tests/settings.py): the Redis database may be shared, so
    nothing is flushed; at the end the run deletes its own keys and nothing else."""
    yield
    shared = redis_clients()
    # A prefix set from outside could be a real deployment's: then the run leaves its keys rather than guess.
    if shared.prefix.startswith(TEST_KEY_PREFIX_START):
        shared.delete_prefixed_keys()
    shared.close()


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[MockUpstream]:
    with MockUpstream() as up:
        yield up


@pytest.fixture
def upstream(upstream_server: MockUpstream) -> MockUpstream:
    upstream_server.reset()
    return upstream_server


@dataclass
class RunningGateway:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gateway(extra_env: dict[str, str] | None = None, log_name: str = "gateway") -> RunningGateway:
    port = free_port()
    log_path = Path(settings.DATA_DIR) / f"{log_name}-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "GREENGATE_TEST_DATABASE": connection.settings_dict["NAME"],
        "PORT": str(port),
        "LOG_LEVEL": "info",
        **(extra_env or {}),
    }
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "greengate_site.server"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"GreenGate exited at start-up:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return RunningGateway(url, process, log_path)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"GreenGate did not start:\n{log_path.read_text()}")


def stop_gateway(gateway: RunningGateway) -> None:
    gateway.process.terminate()
    try:
        gateway.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        gateway.process.kill()


@pytest.fixture(scope="session")
def gateway_server(django_db_setup, django_db_blocker) -> Iterator[RunningGateway]:
    """A real GreenGate (daphne) process serving the test database."""
    gateway = start_gateway()
    yield gateway
    stop_gateway(gateway)


def wait_for_quiet_ledger(quiet_for: float = 0.15, timeout: float = 10.0) -> None:
    """Wait until the gateway has no ledger write in flight, so the test's table flush cannot collide with one."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = LedgerEntry.objects.count()
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_for:
            return
        time.sleep(0.03)


@pytest.fixture
def gateway(gateway_server: RunningGateway, transactional_db) -> Iterator[RunningGateway]:
    """The running gateway, with this test's rows committed so that it can see them."""
    yield gateway_server
    wait_for_quiet_ledger()


@pytest.fixture
def api_key(transactional_db) -> str:
    """A fresh tenant's key secret."""
    tenant = TenantFactory()
    _, secret = api_key_create(tenant=tenant, name="test")
    return secret


@pytest.fixture
def route(transactional_db, upstream: MockUpstream) -> Callable[..., object]:
    """route(model, priority=0, weight=1, timeout=10, first_byte_timeout=None, **knobs): a mock-upstream deployment."""

    def make(
        model: str = "gpt-test",
        *,
        priority: int = 0,
        weight: int = 1,
        timeout: float = 10.0,
        first_byte_timeout: float | None = None,
        **knobs,
    ):
        provider = ProviderFactory(base_url=upstream.base_url(**knobs))
        return DeploymentFactory(
            model_name=model,
            provider=provider,
            priority=priority,
            weight=weight,
            total_timeout=timeout,
            first_byte_timeout=first_byte_timeout or timeout,
        )

    return make


def wait_for_ledger(request_id: str, timeout: float = 10.0) -> LedgerEntry:
    """Ledger rows are written just after the response; wait for the row of this request (by either id)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = LedgerEntry.objects.filter(Q(request_id=request_id) | Q(client_request_id=request_id)).first()
        if entry is not None:
            return entry
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for request {request_id} within {timeout}s")


@pytest.fixture
def ledger_row() -> Callable[..., LedgerEntry]:
    return wait_for_ledger


# --- Admin pages in headless Chromium (Debian's package, driven by pip's playwright) ---------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture(scope="module")
def orm_beside_playwright() -> Iterator[None]:
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls (and the
    # database flush between tests) are still plain sync code.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def admin_page(browser: Browser, gateway, orm_beside_playwright: None) -> Iterator[Page]:
    get_user_model().objects.create_superuser("root", "root@example.com", "correct-horse-battery")
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{gateway.url}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "correct-horse-battery")
    page.click("input[type=submit]")
    page.wait_for_url(f"{gateway.url}/admin/")
    yield page
    context.close()
