"""A key's last-used time is recorded off the hot path, without moving the config version."""

from __future__ import annotations

import time

import httpx

from gateway.live_config import VERSION_KEY
from greengate_site import redis as shared
from tenants.models import ApiKey
from tenants.services import api_key_create
from tests.factories import TenantFactory


def test_a_used_key_gets_its_last_used_time_without_a_config_reload(gateway, route):
    route("gpt-test")
    key, secret = api_key_create(tenant=TenantFactory(), name="used")
    assert key.last_used_at is None
    time.sleep(0.3)
    version = shared.sync_client().get(shared.key(*VERSION_KEY))
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    before = time.time()
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        key.refresh_from_db()
        if key.last_used_at is not None:
            break
        time.sleep(0.2)
    assert key.last_used_at is not None and key.last_used_at.timestamp() >= before - 1
    assert shared.sync_client().get(shared.key(*VERSION_KEY)) == version
    assert ApiKey.objects.get(pk=key.pk).last_used_at == key.last_used_at
