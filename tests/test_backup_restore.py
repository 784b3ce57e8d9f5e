"""The documented backup works: a custom-format pg_dump of the database, restored with pg_restore into a new
database, holds the same ledger rows and the same sums."""

from __future__ import annotations

import secrets
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from greengate_site.request_context import uuid7
from ledger.models import LedgerEntry
from scripts import pg_backup
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)  # pg_dump sees only committed rows

LEDGER = LedgerEntry._meta.db_table
ROWS = f"SELECT id, request_id, tenant_id, created_at, cost_usd, energy_joules, co2e_grams FROM {LEDGER} ORDER BY id"
# Floats summed in one order: a parallel or differently ordered scan may round the last digit differently.
SUMS = (
    f"SELECT count(*), sum(cost_usd), sum(energy_joules ORDER BY id), sum(prompt_tokens), sum(completion_tokens), "
    f"sum(cost_saved_usd) FROM {LEDGER}"
)


def read(dbname: str, sql: str) -> list[tuple]:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["dbname"] = dbname
    with psycopg.connect(**params, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def test_a_dump_restored_into_a_new_database_has_the_same_ledger(tmp_path):
    tenant = TenantFactory()
    start = datetime(2026, 9, 1, tzinfo=UTC)
    LedgerEntry.objects.bulk_create(
        LedgerEntry(
            id=uuid7(),
            request_id=uuid7().hex,
            created_at=start + timedelta(minutes=i),
            tenant=tenant if i % 4 else None,
            model="gpt-4o-mini",
            status_code=200,
            latency_ms=400 + i,
            prompt_tokens=1000 + i,
            completion_tokens=50 * i,
            energy_joules=0.1 + i / 3,
            co2e_grams=1e-5 * i,
            cost_usd=None if i % 7 == 0 else Decimal("0.000000000001") + Decimal(i) / 10**6,
            cost_saved_usd=Decimal("0.000123456789") if i % 5 == 0 else Decimal(0),
        )
        for i in range(200)
    )
    db = connection.settings_dict
    dump = tmp_path / "greengate.dump"
    restored = f"restore_{secrets.token_hex(4)}"

    subprocess.run(pg_backup.dump_command(db, dump), env=pg_backup.environment(db), check=True, timeout=120)
    assert dump.read_bytes()[:5] == b"PGDMP"  # the custom format's signature
    try:
        subprocess.run(pg_backup.create_command(db, restored), env=pg_backup.environment(db), check=True)
        subprocess.run(
            pg_backup.restore_command(db, dump, restored), env=pg_backup.environment(db), check=True, timeout=120
        )
        original, copy = read(db["NAME"], ROWS), read(restored, ROWS)
        assert len(copy) == 200 and copy == original
        assert read(restored, SUMS) == read(db["NAME"], SUMS)
        # The tenants the rows point at came along, and the constraints with them.
        assert read(restored, f"SELECT count(*) FROM {LEDGER} l JOIN tenants_tenant t ON t.id = l.tenant_id") == [
            (150,)
        ]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
    assert read("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{restored}'") == [(0,)]


def test_the_backup_tools_are_the_same_major_version_as_the_server():
    version = subprocess.run([pg_backup.tool("pg_dump"), "--version"], capture_output=True, text=True, check=True)
    server_major = connection.cursor().connection.info.server_version // 10000
    assert f"(PostgreSQL) {server_major}." in version.stdout
