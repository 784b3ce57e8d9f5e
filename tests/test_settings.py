"""Bad configuration stops GreenGate at start-up with one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "0"}, "PORT must be at least 1, got 0"),
        ({"PORT": "eighty"}, "PORT must be a whole number, got 'eighty'"),
        ({"MAX_REQUEST_BYTES": "lots"}, "MAX_REQUEST_BYTES must be a whole number, got 'lots'"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of critical, debug, error, info, warning, got 'loud'"),
        ({"DEBUG": "maybe"}, "DEBUG must be true or false, got 'maybe'"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must be a URL starting with"),
        ({"DATABASE_URL": "mysql://root@127.0.0.1/test"}, "DATABASE_URL must point at PostgreSQL"),
        ({"LLM_PROVIDER_SEQUENCE": "openai,psychic"}, "LLM_PROVIDER_SEQUENCE names unknown provider kinds ['psychic']"),
        ({"UPSTREAM_TIMEOUT": "-1"}, "UPSTREAM_TIMEOUT must be at least 1.0, got -1.0"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 characters long"),
    ],
)
@pytest.mark.parametrize("entry", [["manage.py", "check"], ["-m", "greengate_site.server"]], ids=["manage", "server"])
def test_bad_setting_fails_at_start_up_with_a_clear_message(env, message, entry):
    result = subprocess.run(
        [sys.executable, *entry],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "greengate_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("GreenGate configuration error:")
