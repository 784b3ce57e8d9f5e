"""What `make run` does on a bare machine: an admin, a demo key, and models that answer with no provider key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from providers.models import Deployment, Provider
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def bootstrap(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run(
        [sys.executable, "manage.py", "bootstrap"],
        cwd=ROOT,
        env={**clean, "GREENGATE_TEST_DATABASE": connection.settings_dict["NAME"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_first_run_creates_an_admin_and_a_demo_key_that_the_demo_model_answers(gateway):
    credentials = Path(settings.DATA_DIR) / "first-run-credentials.txt"
    credentials.unlink(missing_ok=True)
    first = bootstrap()
    assert first.returncode == 0, first.stderr
    # Never into stdout, the log stream: to the terminal, or (with none, as here) a file only its owner reads.
    assert "gg-" not in first.stdout and "password" not in first.stdout
    assert str(credentials) in first.stderr and "gg-" not in first.stderr
    assert credentials.stat().st_mode & 0o777 == 0o600
    banner = credentials.read_text()
    secret = re.search(r"API key:\s+(gg-\S+)", banner).group(1)
    password = re.search(r"password: (\S+)", banner).group(1)
    assert get_user_model().objects.get(username="admin").check_password(password)

    for model in ("greengate-demo", "gpt-4o-mini"):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "Hello!"}]},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "GreenGate's demo provider" in body["choices"][0]["message"]["content"]
        assert body["usage"]["completion_tokens"] > 0

    credentials.unlink()
    again = bootstrap()
    assert again.returncode == 0
    assert not credentials.exists()  # credentials are given once, on the first run only


def test_openai_settings_route_the_openai_models_upstream_and_switch_off_their_demo_answers(upstream):
    bootstrap()
    assert Deployment.objects.filter(provider__name="demo", model_name="gpt-4o-mini", is_enabled=True).exists()

    result = bootstrap(
        OPENAI_API_KEY="sk-from-env", OPENAI_BASE_URL=upstream.base_url(), OPENAI_MODELS="gpt-4o-mini,o4-mini"
    )
    assert result.returncode == 0, result.stderr
    openai = Provider.objects.get(name="openai")
    assert (openai.kind, openai.base_url, openai.api_key) == ("openai", upstream.base_url(), "sk-from-env")
    assert set(openai.deployments.values_list("model_name", flat=True)) == {"gpt-4o-mini", "o4-mini"}
    assert not Deployment.objects.filter(provider__name="demo", model_name="gpt-4o-mini", is_enabled=True).exists()
    assert Deployment.objects.filter(provider__name="demo", model_name="greengate-demo", is_enabled=True).exists()

    bootstrap(OPENAI_API_KEY="sk-rotated", OPENAI_BASE_URL=upstream.base_url(), OPENAI_MODELS="gpt-4o-mini")
    openai.refresh_from_db()
    assert openai.api_key == "sk-rotated"
