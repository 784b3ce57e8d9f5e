"""Provider credentials are encrypted at rest, and the encryption key can be rotated without losing them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from providers.models import Provider
from tests.conftest import ROOT
from tests.factories import ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "GREENGATE_TEST_DATABASE": connection.settings_dict["NAME"], **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=full_env
    )


def stored(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM providers_provider WHERE name = %s", [name])
        return cursor.fetchone()[0]


def read_with(key: str, name: str) -> subprocess.CompletedProcess:
    code = f"from providers.models import Provider; print(Provider.objects.get(name={name!r}).api_key)"
    return manage("shell", "--no-imports", "-c", code, GREENGATE_ENCRYPTION_KEY=key)


def test_a_credential_survives_a_key_rotation_and_the_old_key_can_then_be_dropped():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    made = manage(
        "shell",
        "--no-imports",
        "-c",
        "from providers.models import Provider; "
        "Provider.objects.create(name='rotating', kind='openai', base_url='https://api.openai.com/v1', "
        "api_key='sk-rotate-me-please')",
        GREENGATE_ENCRYPTION_KEY=old,
    )
    assert made.returncode == 0, made.stderr
    before = stored("rotating")
    assert "sk-rotate" not in before

    # The new key first, the old one still listed: everything still reads, then is rotated onto the new key.
    rotated = manage("rotate_credentials", GREENGATE_ENCRYPTION_KEY=f"{new},{old}")
    assert rotated.returncode == 0, rotated.stderr
    assert int(rotated.stdout.strip()) >= 1
    assert stored("rotating") != before

    alone = read_with(new, "rotating")
    assert alone.returncode == 0 and alone.stdout.strip() == "sk-rotate-me-please"
    stale = read_with(old, "rotating")
    assert stale.returncode != 0 and "cannot be decrypted" in stale.stderr
    assert "sk-rotate-me-please" not in stale.stderr


def test_a_bad_encryption_key_is_refused_clearly():
    ProviderFactory(name="any", api_key="sk-x")
    result = read_with("not-a-fernet-key", "any")
    assert result.returncode != 0 and "GREENGATE_ENCRYPTION_KEY must be" in result.stderr


def test_credentials_are_never_stored_in_clear():
    provider = ProviderFactory(name="clear", api_key="sk-live-abcdef123456")
    assert "sk-live" not in stored("clear")
    assert Provider.objects.get(pk=provider.pk).api_key == "sk-live-abcdef123456"
