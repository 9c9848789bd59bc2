"""Least privilege: sql/roles/create_roles.sql, run by psql as a DBA would, gives
an owner that migrates, a batch role that runs the batch, and a read-only role
for status, verify and every --dry-run; a command lacking a privilege fails in
one line naming what is missing and the role to use."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pnl.embedded import server_bindir
from tests.conftest import ROOT, CliResult, Db, ServerInfo, run_cli
from tests.test_cli import assert_one_line_error


@dataclass
class Roles:
    owner: str
    batch: str
    readonly: str
    admin: Db
    server: ServerInfo

    def dsn(self, role: str) -> str:
        return f"postgresql://{role}:pw-{role}@{self.server.host}:{self.server.port}/{self.admin.conn.info.dbname}"

    def run_script(self) -> None:
        """psql -v owner=... -v batch=... -v readonly=... -f sql/roles/create_roles.sql, as the admin."""
        env = {**os.environ, "PGHOST": self.server.host, "PGPORT": str(self.server.port), "PGUSER": self.server.user,
               "PGPASSWORD": self.server.password, "PGDATABASE": self.admin.conn.info.dbname}
        psql = server_bindir(os.environ.get("PNL_PG_SOURCE", "auto"))[0] / "psql"
        script = ROOT / "sql" / "roles" / "create_roles.sql"
        proc = subprocess.run([str(psql), "-X", "-q", "-v", f"owner={self.owner}", "-v", f"batch={self.batch}",
                               "-v", f"readonly={self.readonly}", "-f", str(script)],
                              capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr

    def cli(self, role: str, *args: str) -> CliResult:
        return run_cli(*args, dsn=self.dsn(role))


@pytest.fixture
def roles(empty_db: Db, pg_server: ServerInfo) -> Iterator[Roles]:
    suffix = empty_db.conn.info.dbname.replace("-", "_")[-20:]
    r = Roles(f"own_{suffix}", f"bat_{suffix}", f"ro_{suffix}", empty_db, pg_server)
    r.run_script()
    for role in (r.owner, r.batch, r.readonly):
        empty_db.execute(f"ALTER ROLE \"{role}\" PASSWORD 'pw-{role}'")
    try:
        yield r
    finally:  # roles are cluster-wide: leave none behind
        for role in (r.owner, r.batch, r.readonly):
            empty_db.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
            empty_db.execute(f'DROP OWNED BY "{role}"')
            empty_db.execute(f'DROP ROLE "{role}"')


def test_each_command_runs_with_its_role_and_no_more(roles: Roles) -> None:
    db = roles.admin
    # The owner migrates (and owns what it creates); the script, re-run, grants the batch its writes.
    assert roles.cli(roles.owner, "migrate").code == 0
    assert db.scalar("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'portfolio_snapshots'") \
        == roles.owner
    roles.run_script()
    roles.run_script()  # idempotent
    seeded = roles.cli(roles.owner, "seed", "--portfolios", "12", "--positions", "3", "--days", "8", "--json")
    assert seeded.code == 0, seeded.err
    first, last = json.loads(seeded.out)["first_trading_day"], json.loads(seeded.out)["last_trading_day"]

    # Migrating needs the owner: the batch role gets one line naming the privilege and the role.
    res = roles.cli(roles.batch, "migrate")
    assert_one_line_error(res, 1, "missing privilege", "CREATE on schema", "owner role")
    assert_one_line_error(roles.cli(roles.batch, "rollback", "--to", "0005", "--yes"), 1, "owner role")

    # The read-only role cannot run the batch, and nothing is written.
    res = roles.cli(roles.readonly, "batch", "run", "--date", last)
    assert_one_line_error(res, 1, "missing privilege", "permission denied for table", "batch role")
    assert db.scalar("SELECT count(*) FROM batch_runs") == 0

    # The batch role runs the batch, backfill and cleanup.
    res = roles.cli(roles.batch, "batch", "backfill", "--from", first, "--to", last, "--json")
    assert res.code == 0, res.err
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE is_complete") == \
        12 * db.scalar("SELECT count(DISTINCT price_date) FROM market_prices")
    assert roles.cli(roles.batch, "batch", "run", "--date", last).code == 0
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id, claimed_at,"
               " lease_expires_at) VALUES (1, '2000-01-03', false, 999, now() - interval '2h', now())")
    assert_one_line_error(roles.cli(roles.readonly, "cleanup", "--older-than", "1h", "--yes"), 1,
                          "permission denied for table portfolio_snapshots", "batch role")
    res = roles.cli(roles.batch, "cleanup", "--older-than", "1h", "--yes", "--json")
    assert res.code == 0 and json.loads(res.out)["deleted"] == 1, res.err
    # A grant lost (a migration added a table after the roles script ran): one line, saying to re-run the script.
    db.execute(f'REVOKE INSERT ON batch_runs FROM "{roles.batch}"')
    assert_one_line_error(roles.cli(roles.batch, "batch", "run", "--date", last), 1, "permission denied for table",
                          "re-running it as the owner after a migration")
    roles.run_script()
    # ... and undo, restore, and the batch again.
    navs = db.all("SELECT id, net_asset_value FROM portfolio_snapshots ORDER BY id")
    res = roles.cli(roles.batch, "batch", "undo", "--from", last, "--yes", "--json")
    assert res.code == 0 and json.loads(res.out)["removed"] == 12, res.err
    undo_run = json.loads(res.out)["run_id"]
    assert roles.cli(roles.batch, "batch", "undo", "--restore", str(undo_run), "--yes").code == 0
    assert db.all("SELECT id, net_asset_value FROM portfolio_snapshots ORDER BY id") == navs
    rescue_runs = db.scalar("SELECT count(*) FROM rescue_runs")

    # The read-only role: status, verify and every dry run; it changes nothing.
    before = db.all("SELECT id, net_asset_value, is_complete FROM portfolio_snapshots ORDER BY id")
    runs_before = db.scalar("SELECT count(*) FROM batch_runs")
    for args in (("status", "--json"), ("verify",), ("cleanup", "--older-than", "1s", "--dry-run"),
                 ("dedupe", "--dry-run", "--json"), ("repair", "--all-broken", "--dry-run"),
                 ("batch", "undo", "--from", first, "--dry-run", "--json"),
                 ("repair", "--portfolio", "3", "--from", last, "--dry-run", "--json")):
        res = roles.cli(roles.readonly, *args)
        assert res.code == 0, (args, res.err)
    replay = json.loads(res.out)
    assert replay["dry_run"] is True and replay["snapshots"] >= 1 and replay["changed"] == 0
    assert db.all("SELECT id, net_asset_value, is_complete FROM portfolio_snapshots ORDER BY id") == before
    assert db.scalar("SELECT count(*) FROM batch_runs") == runs_before
    assert db.scalar("SELECT count(*) FROM rescue_runs") == rescue_runs
    assert db.scalar("SELECT count(*) FROM snapshot_repair_audit") == 0

    # The write list is exactly the batch's: it may not touch positions or prices.
    assert db.scalar("SELECT has_table_privilege(%s, 'positions', 'INSERT')", roles.batch) is False
    assert db.scalar("SELECT has_column_privilege(%s, 'portfolios', 'name', 'UPDATE')", roles.batch) is False
    assert db.scalar("SELECT has_table_privilege(%s, 'portfolio_snapshots', 'INSERT')", roles.readonly) is False
