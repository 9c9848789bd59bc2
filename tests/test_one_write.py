"""The one-write path: a free slot is claimed and finalized by one INSERT
(batch/insert_complete.sql): the row is born complete, written once, and a
crash leaves nothing behind. What it cannot write (a slot another run holds, a
portfolio that cannot be computed now, a failed statement) goes through the
two-step protocol, whose own tests (test_crash_safety, test_concurrency)
widen the claim -> finalize window from the database and so force that path."""

from __future__ import annotations

import json
import random
import signal
import time
from datetime import date

import psycopg

from tests.conftest import Db, run_cli
from tests.data import Book, random_book
from tests.procs import finish, start_batch, wait_for
from tests.reference import replay

DAYS = [date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3)]
DAY = DAYS[0]

# A statement trigger on the one-write INSERT only (the statement's text starts
# with its file's header): sleep, or wait at a gate the test opens.
INSERT_HOOK_SQL = """
DROP TABLE IF EXISTS pnl_test_insert_gate;
CREATE TABLE pnl_test_insert_gate (opened boolean NOT NULL);
CREATE OR REPLACE FUNCTION pnl_test_insert_hook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
    IF current_query() NOT LIKE '-- insert_complete:%' THEN
        RETURN NULL;
    END IF;
    IF TG_ARGV[0] = 'gate' THEN
        WHILE NOT EXISTS (SELECT 1 FROM pnl_test_insert_gate) AND clock_timestamp() < deadline LOOP
            PERFORM pg_sleep(0.02);
        END LOOP;
    ELSE
        PERFORM pg_sleep(TG_ARGV[0]::double precision);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS pnl_test_insert_hook ON portfolio_snapshots;
CREATE TRIGGER pnl_test_insert_hook
    BEFORE INSERT ON portfolio_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION pnl_test_insert_hook('{arg}');
"""


def hook_insert(db: Db, arg: str) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(INSERT_HOOK_SQL.replace("{arg}", arg))


def unhook_insert(db: Db) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("DROP TRIGGER IF EXISTS pnl_test_insert_hook ON portfolio_snapshots;"
                     " INSERT INTO pnl_test_insert_gate VALUES (true)")


def inserting(db: Db) -> int:
    """Backends inside a one-write INSERT right now."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND state = 'active' AND query LIKE '-- insert_complete:%'").fetchone()
    return int(row[0]) if row else 0


def born_complete(db: Db) -> tuple[int, int]:
    """(rows, rows claimed and completed in one transaction, never a claim)."""
    return db.one("SELECT count(*), count(*) FILTER (WHERE claimed_at = completed_at AND lease_expires_at IS NULL)"
                  " FROM portfolio_snapshots")  # type: ignore[return-value]


def assert_chains(db: Db, book: Book, days: list[date]) -> None:
    rows = db.all("SELECT portfolio_id, snapshot_date, count(*), bool_and(is_complete)"
                  " FROM portfolio_snapshots GROUP BY 1, 2")
    assert len(rows) == len(book.balances) * len(days)
    assert all(n == 1 and complete for _, _, n, complete in rows)
    navs = {(p, d): nav for p, d, nav in db.all(
        "SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots")}
    equity = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    for pid, balance in book.balances.items():
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], days)
        assert [navs[(pid, s.day)] for s in chain] == [s.nav for s in chain], pid
        assert equity[pid] == chain[-1].nav, pid


def test_a_run_writes_each_snapshot_once_born_complete(db: Db) -> None:
    book = random_book(db.conn, 120, DAYS)
    res = run_cli("batch", "run", "--date", DAY.isoformat(), "--chunk-size", "25", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["processed"] == 120
    assert born_complete(db) == (120, 120)
    # the catch-up too: two dates owed, each written once, in date order
    res = run_cli("batch", "run", "--date", DAYS[2].isoformat(), "--chunk-size", "25", "--json", dsn=db.dsn)
    out = json.loads(res.out)
    assert res.code == 0, res.err
    assert [(d["date"], d["processed"]) for d in out["dates"]] == [(DAYS[1].isoformat(), 120),
                                                                    (DAYS[2].isoformat(), 120)]
    assert born_complete(db) == (360, 360)
    assert_chains(db, book, DAYS)


def test_kill_9_inside_the_one_write_statement_leaves_nothing(db: Db) -> None:
    book = random_book(db.conn, 60, [DAY])
    before = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    hook_insert(db, "gate")
    victim = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "20", "--workers", "1")
    wait_for(lambda: inserting(db) == 1, what="the first chunk's INSERT to be in flight")
    victim.kill()
    victim.wait()
    unhook_insert(db)                      # the server finishes the statement; the COMMIT never comes
    wait_for(lambda: inserting(db) == 0, what="the server to end the dead client's statement")
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0      # no row, no claim, no lease
    assert dict(db.all("SELECT id, equity_balance FROM portfolios")) == before
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert out is not None and (out["processed"], out["reclaimed"], out["held"]) == (60, 0, 0)
    assert_chains(db, book, [DAY])


def test_undo_is_refused_while_a_batch_run_is_running(db: Db) -> None:
    """In the one-write phase a run holds no claim; undo still refuses while it runs."""
    random_book(db.conn, 30, [DAY])
    hook_insert(db, "gate")
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", "1")
    try:
        wait_for(lambda: inserting(db) == 1, what="the run's first INSERT in flight")
        res = run_cli("batch", "undo", "--from", DAY.isoformat(), "--yes", dsn=db.dsn)
        run_id = db.scalar("SELECT max(id) FROM batch_runs")
        assert res.code == 1 and f"run #{run_id} (running" in res.err and "Traceback" not in res.err, res.err
        assert len(res.err.strip().splitlines()) == 1
    finally:
        unhook_insert(db)
    code, out, err = finish(proc)
    assert code == 0 and out is not None and out["processed"] == 30, err
    res = run_cli("batch", "undo", "--from", DAY.isoformat(), "--yes", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0


def test_a_slot_another_run_holds_goes_the_two_step_way(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    held = min(book.balances)
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id,"
               " claimed_at, lease_expires_at) VALUES (%s, %s, false, 777, now(), now() + interval '1 hour')",
               held, DAY)
    res = run_cli("batch", "run", "--date", DAY.isoformat(), "--json", dsn=db.dsn)
    out = json.loads(res.out)
    assert res.code == 75, res.err
    assert (out["processed"], out["held"]) == (29, 1)
    assert born_complete(db) == (30, 29)          # the held claim is untouched
    db.execute("UPDATE portfolio_snapshots SET lease_expires_at = now() - interval '1 second'"
               " WHERE NOT is_complete")          # its run died: the hour passes
    res = run_cli("batch", "run", "--date", DAY.isoformat(), "--json", dsn=db.dsn)
    out = json.loads(res.out)
    assert res.code == 0, res.err
    assert (out["processed"], out["reclaimed"], out["already_done"]) == (1, 1, 29)
    assert_chains(db, book, [DAY])


def test_eight_processes_race_on_the_one_write_path(db: Db) -> None:
    book = random_book(db.conn, 400, DAYS[:2])
    hook_insert(db, "0.3")                  # each INSERT takes a while: eight runs of 16 chunks overlap for real
    for day in DAYS[:2]:
        procs = [start_batch(db.dsn, "--date", day.isoformat(), "--chunk-size", "25", "--wait") for _ in range(8)]
        outs = []
        for p in procs:
            code, out, err = finish(p, timeout=300)
            assert code == 0, (err, out and (out["status"], out["error"], out["failures"][:3]))
            assert out is not None
            outs.append(out)
        # The overlap, from the database: every run started before any of them finished.
        ids = [o["run_id"] for o in outs]
        assert db.scalar("SELECT max(started_at) < min(finished_at) FROM batch_runs WHERE id = ANY(%s)", ids)
        assert all(o["processed"] + o["already_done"] == 400 and o["held"] == 0 for o in outs)
        assert sum(o["processed"] for o in outs) == 400
    unhook_insert(db)
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") == 0
    assert_chains(db, book, DAYS[:2])


def test_sixteen_processes_killed_at_random_on_the_one_write_path(db: Db) -> None:
    book = random_book(db.conn, n_portfolios=2000, days=[DAY], n_symbols=200, seed=11)
    rng = random.Random(2027)
    hook_insert(db, "0.05")                 # every INSERT a little longer, so kills land inside some
    # A portfolio another run is writing is skipped and taken the two-step way, so a killed run can
    # leave claims after all: a short lease and --wait let the survivors take them over.
    procs = [start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "50", "--lease", "5s", "--wait")
             for _ in range(16)]
    victims = rng.sample(range(16), 5)
    t0 = time.monotonic()
    for at, v in sorted((rng.uniform(0.3, 1.5), v) for v in victims):
        time.sleep(max(0.0, at - (time.monotonic() - t0)))
        procs[v].send_signal(signal.SIGKILL)
    done = 0
    for i, p in enumerate(procs):
        code, out, err = finish(p, timeout=300)
        if i in victims:
            assert code in (0, -signal.SIGKILL), err
        else:
            assert code == 0, (err, out and (out["status"], out["failures"][:3], out["holders"]))
            assert out is not None and out["held"] == 0 and out["failed"] == 0
            done += out["processed"]
    assert done <= 2000
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") == 0
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 2000     # the survivors finished the book
    print("born complete:", born_complete(db))
    unhook_insert(db)
    code, final, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert final is not None and (final["processed"], final["already_done"]) == (0, 2000)
    assert_chains(db, book, [DAY])


def test_the_p_and_l_rule_is_written_once_and_included(tmp_path) -> None:  # noqa: ANN001
    import pytest

    from pnl.errors import PnlError
    from pnl.queries import sql

    rule = sql("batch/snapshot_values")
    for name in ("batch/finalize_claimed", "batch/insert_complete"):
        text = sql(name)
        assert rule.rstrip("\n") in text and "-- @include" not in text.replace("`-- @include", "")
    (tmp_path / "a.sql").write_text("SELECT 1\n-- @include b\n;\n")
    (tmp_path / "b.sql").write_text("-- b: a part\n, 2\n")
    assert sql("a", tmp_path) == "SELECT 1\n-- b: a part\n, 2\n;\n"
    (tmp_path / "c.sql").write_text("-- @include nowhere\n")
    with pytest.raises(PnlError, match="c.sql includes nowhere.sql"):
        sql("a", tmp_path / ".." / tmp_path.name)       # a new folder path: loaded afresh


def test_a_long_one_write_phase_keeps_its_heartbeat_younger_than_its_lease(db: Db) -> None:
    """The one-write path holds no claim, so only the heartbeat says the run is alive: within a
    chunk that takes longer than the lease it is recorded at least every third of the lease."""
    days = [date(2026, 6, 1 + i) for i in range(8)]
    random_book(db.conn, 20, days)
    hook_insert(db, "0.6")                 # 8 dates x 0.6 s in one chunk: longer than the 3 s lease
    proc = start_batch(db.dsn, "--from", days[0].isoformat(), "--to", days[-1].isoformat(), "--chunk-size", "100",
                       "--lease", "3s", cmd=("batch", "backfill"))
    ages: list[float] = []
    try:
        while proc.poll() is None:
            ages += [age for (age,) in db.all("SELECT extract(epoch FROM clock_timestamp() - heartbeat_at)::float"
                                              " FROM batch_runs WHERE status = 'running'")]
            time.sleep(0.1)
    finally:
        unhook_insert(db)
    code, out, err = finish(proc)
    assert code == 0 and out is not None and out["run"]["processed"] == 20 * 8, err
    assert born_complete(db) == (160, 160)                    # all of it on the one-write path
    assert len(ages) * 0.1 > 3, ages                          # the run was watched for longer than its lease
    assert max(ages) < 3, ages                                # and never looked dead
    assert db.scalar("SELECT count(*) FROM batch_runs WHERE status = 'abandoned'") == 0
