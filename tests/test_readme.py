"""The README's commands, run as printed."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, Db

VERIFY_ALL = ('for f in sql/verify/*.sql; do echo "== $f"; psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -f "$f"; '
              'done')


def psql_dir() -> str | None:
    found = shutil.which("psql") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))), None)
    return os.path.dirname(found) if found else None


@pytest.mark.skipif(psql_dir() is None, reason="no psql on this machine")
def test_the_readmes_command_runs_every_verify_file(db: Db) -> None:
    assert VERIFY_ALL in (ROOT / "README.md").read_text()
    pid = db.scalar("INSERT INTO portfolios (name, equity_balance) VALUES ('p', 7) RETURNING id")
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, net_asset_value) VALUES (%s,"
               " '2026-01-05', 5)", pid)                                              # equity 7 vs NAV 5
    env = {**os.environ, "DATABASE_URL": db.dsn, "PATH": f"{psql_dir()}:{os.environ['PATH']}"}
    res = subprocess.run(["bash", "-c", VERIFY_ALL], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for path in sorted((ROOT / "sql" / "verify").glob("*.sql")):
        assert f"== sql/verify/{path.name}" in res.stdout, path.name
    assert "(1 row)" in res.stdout.split("== sql/verify/equity_mismatch.sql", 1)[1].split("==", 1)[0]
