"""Real OS processes running the CLI, for crash, signal and concurrency tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_batch(dsn: str, *args: str, pause: float = 0.0, global_args: tuple[str, ...] = (),
                cmd: tuple[str, ...] = ("batch", "run")) -> subprocess.Popen:
    """`pnl [GLOBAL_ARGS] batch run ARGS --json` (or another CMD, e.g. batch backfill)
    as a real process (pause: the test-only sleep between claiming a chunk and finalizing it)."""
    env = {**os.environ, "DATABASE_URL": dsn}
    if pause:
        env["PNL_TEST_PAUSE_AFTER_CLAIM"] = str(pause)
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *global_args, *cmd, *args, "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- race windows, widened from the database side
SLOW_FINALIZE_SQL = """
CREATE OR REPLACE FUNCTION pnl_test_sleep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(TG_ARGV[0]::double precision);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS pnl_test_slow_finalize ON portfolio_snapshots;
CREATE TRIGGER pnl_test_slow_finalize
    BEFORE UPDATE OF is_complete ON portfolio_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION pnl_test_sleep('{seconds}');
"""

UNSLOW_FINALIZE_SQL = "DROP TRIGGER IF EXISTS pnl_test_slow_finalize ON portfolio_snapshots"


def slow_finalize(dsn: str, seconds: float) -> None:
    """Make every finalize statement (the UPDATE that sets is_complete) sleep
    `seconds` first, inside the database: a run then holds committed claims for
    that long before it can finish them, which is the window crash, signal and
    race tests need. Nothing in pnl's own code knows about it. Undo with
    unslow_finalize(dsn)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SLOW_FINALIZE_SQL.replace("{seconds}", repr(float(seconds))))


def unslow_finalize(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(UNSLOW_FINALIZE_SQL)
