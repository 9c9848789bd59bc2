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


def start_batch(dsn: str, *args: str, global_args: tuple[str, ...] = (),
                cmd: tuple[str, ...] = ("batch", "run")) -> subprocess.Popen:
    """`pnl [GLOBAL_ARGS] batch run ARGS --json` (or another CMD, e.g. batch backfill)
    as a real process. To hold it inside a chunk, slow its finalize from the
    database: slow_finalize() / hold_finalize()."""
    env = {**os.environ, "DATABASE_URL": dsn}
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
# The batch writes a free slot in one statement (batch/insert_complete.sql: the
# row is born complete, nothing to widen); the windows below are those of the
# two-step protocol (claim, then finalize), which it uses for what that
# statement leaves. While a window is widened, that statement is refused (it
# raises), so the batch takes the two-step path for every slot.
TWO_STEP_ONLY_SQL = """
CREATE OR REPLACE FUNCTION pnl_test_refuse_one_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_query() LIKE '-- insert_complete:%' THEN
        RAISE EXCEPTION 'pnl test: one-statement insert refused';
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS pnl_test_two_step_only ON portfolio_snapshots;
CREATE TRIGGER pnl_test_two_step_only
    BEFORE INSERT ON portfolio_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION pnl_test_refuse_one_step();
"""

SLOW_FINALIZE_SQL = TWO_STEP_ONLY_SQL + """
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

UNSLOW_FINALIZE_SQL = ("DROP TRIGGER IF EXISTS pnl_test_slow_finalize ON portfolio_snapshots;"
                       " DROP TRIGGER IF EXISTS pnl_test_two_step_only ON portfolio_snapshots")


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


# ---------------------------------------------------------------- a gate at the finalize statement, opened by the test
HOLD_FINALIZE_SQL = TWO_STEP_ONLY_SQL + """
DROP TRIGGER IF EXISTS pnl_test_hold_finalize ON portfolio_snapshots;
DROP SEQUENCE IF EXISTS pnl_test_gate_entries;
DROP TABLE IF EXISTS pnl_test_gate_open;
CREATE SEQUENCE pnl_test_gate_entries;
CREATE TABLE pnl_test_gate_open (opened_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION pnl_test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => TG_ARGV[1]::double precision);
BEGIN
    -- A sequence, not a row: entering the gate takes no lock another run could wait on.
    IF nextval('pnl_test_gate_entries') > TG_ARGV[0]::bigint THEN
        RETURN NULL;
    END IF;
    WHILE NOT EXISTS (SELECT 1 FROM pnl_test_gate_open) AND clock_timestamp() < deadline LOOP
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER pnl_test_hold_finalize
    BEFORE UPDATE OF is_complete ON portfolio_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION pnl_test_gate('{times}', '{timeout}');
"""


def hold_finalize(dsn: str, times: int, timeout: float = 60) -> None:
    """The first `times` finalize statements wait at their start (claims made,
    nothing written, the chunk's portfolio rows locked) until open_finalize(dsn)
    or `timeout` seconds; later ones pass. Lets a test act while chunks are in
    flight with no sleep and no timing guess; nothing in pnl's code knows."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(HOLD_FINALIZE_SQL.replace("{times}", str(int(times))).replace("{timeout}", repr(float(timeout))))


def open_finalize(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pnl_test_gate_open DEFAULT VALUES")


def held_at_finalize(dsn: str) -> int:
    """How many finalize statements are waiting at the gate right now."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                           " AND datname = current_database() AND query ILIKE '%finalize_claimed%'").fetchone()
    return int(row[0]) if row else 0


def claim_owners(dsn: str) -> dict[int, int]:
    """{run id: unfinished claims it holds} right now, from the database."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return dict(conn.execute("SELECT batch_run_id, count(*) FROM portfolio_snapshots WHERE NOT is_complete"
                                 " GROUP BY 1").fetchall())


def expire_leases(dsn: str) -> int:
    """Let the leases of every unfinished claim run out now (what waiting past
    them would do, without the wait). Call it only when no live run holds claims
    it still means to renew. Returns how many claims it touched."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute("UPDATE portfolio_snapshots SET lease_expires_at = now() - interval '1 second'"
                           " WHERE NOT is_complete")
        return cur.rowcount
