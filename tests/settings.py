"""Settings for the test suite: real Redis and a real PostgreSQL with pgvector, kept apart from `make run`'s."""

import os
import secrets
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent

# The suite's embedded PostgreSQL lives beside, not inside, the one `make run` uses.
os.environ.setdefault("DATA_DIR", str(_ROOT / "data" / "test"))
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# Each run owns the keys under its own prefix, so it never touches another process's keys in a shared Redis
# database (conftest deletes them at the end). Set in os.environ, not only here, so that GreenGate servers and
# management commands started by the tests inherit it and share the run's state.
os.environ.setdefault("REDIS_KEY_PREFIX", f"greengate-test-{secrets.token_hex(6)}:")
os.environ.setdefault("CONFIG_REFRESH_SECONDS", "0.2")
os.environ.setdefault("LOG_LEVEL", "warning")
# Many tests send bad keys from 127.0.0.1 to every server of the run: the per-address limit on unauthenticated
# callers must not turn their 401s into 429s (tests of that limit start a server with a low one).
os.environ.setdefault("RATE_LIMIT_PER_MINUTE", "1000000")

from greengate_site.settings import *  # noqa: E402,F403
from greengate_site.settings import DATABASES  # noqa: E402

# A GreenGate server started by a test joins the test database pytest-django created.
if os.environ.get("GREENGATE_TEST_DATABASE"):
    DATABASES["default"]["NAME"] = os.environ["GREENGATE_TEST_DATABASE"]
    DATABASES["default"]["TEST"] = {"NAME": os.environ["GREENGATE_TEST_DATABASE"]}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in browser tests
