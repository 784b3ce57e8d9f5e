"""Admin logins are throttled: repeated failures lock the username out from that address (django-axes)."""

from __future__ import annotations

import re

import httpx
from django.contrib.auth import get_user_model


def attempt(client: httpx.Client, url: str, password: str) -> httpx.Response:
    page = client.get(f"{url}/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return client.post(
        f"{url}/admin/login/?next=/admin/",
        data={"username": "finance", "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{url}/admin/login/"},
    )


def test_five_wrong_passwords_lock_the_account_out_even_for_the_right_one(gateway):
    get_user_model().objects.create_superuser("finance", "f@example.com", "right-password-1")
    with httpx.Client() as client:
        failures = [attempt(client, gateway.url, f"wrong-{i}") for i in range(5)]
        assert all(r.status_code == 200 and "correct username and password" in r.text for r in failures[:4])
        locked = attempt(client, gateway.url, "right-password-1")
        assert locked.status_code == 429
        assert "/admin/" not in locked.headers.get("location", "")


def test_a_successful_login_resets_the_count(gateway):
    get_user_model().objects.create_superuser("finance", "f@example.com", "right-password-1")
    with httpx.Client() as client:
        for i in range(3):
            attempt(client, gateway.url, f"wrong-{i}")
        assert attempt(client, gateway.url, "right-password-1").status_code == 302
    with httpx.Client() as client:
        statuses = [attempt(client, gateway.url, f"again-{i}").status_code for i in range(4)]
        assert statuses == [200] * 4, "the earlier failures no longer count"
