"""Crash safety with real processes, real signals and real database faults."""

from __future__ import annotations

import json
import signal
import time
from datetime import date

import psycopg
import pytest

from tests.conftest import Db, run_cli
from tests.data import Book, random_book
from tests.procs import (
    claim_owners,
    expire_leases,
    finish,
    held_at_finalize,
    hold_finalize,
    open_finalize,
    slow_finalize,
    start_batch,
    unslow_finalize,
    wait_for,
)
from tests.reference import replay

DAY = date(2026, 6, 1)


def incomplete(db: Db) -> int:
    return db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete")  # type: ignore[return-value]


def assert_exactly_once(db: Db, book: Book, days: list[date] = [DAY]) -> None:  # noqa: B006
    rows = db.all("SELECT portfolio_id, snapshot_date, count(*), bool_and(is_complete)"
                  " FROM portfolio_snapshots GROUP BY 1, 2")
    assert len(rows) == len(book.balances) * len(days)
    assert all(n == 1 and complete for _, _, n, complete in rows)
    equity = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    navs = dict(((p, d), nav) for p, d, nav in db.all(
        "SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots"))
    for pid, balance in book.balances.items():
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], days)
        assert [navs[(pid, s.day)] for s in chain] == [s.nav for s in chain], pid
        assert equity[pid] == chain[-1].nav, pid


def test_kill_9_after_claiming_is_recovered_by_lease_expiry(db: Db) -> None:
    book = random_book(db.conn, 60, [DAY])
    hold_finalize(db.dsn, times=1)
    victim = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "20", "--lease", "1h", "--workers", "1")
    wait_for(lambda: held_at_finalize(db.dsn) == 1, what="the first chunk to be claimed and in flight")
    assert incomplete(db) == 20
    victim.kill()
    victim.wait()
    wait_for(lambda: held_at_finalize(db.dsn) == 0, what="the server to end the dead client's statement")
    dead_run = db.scalar("SELECT max(id) FROM batch_runs")
    assert db.scalar("SELECT status FROM batch_runs WHERE id = %s", dead_run) == "running"

    # While the lease is live, the dead run's claims are respected: they are held (exit 75, naming it).
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat(), "--lease", "2s"))
    assert code == 75, err
    assert out is not None and (out["processed"], out["held"], out["reclaimed"]) == (40, 20, 0)
    assert [h["run_id"] for h in out["holders"]] == [dead_run]
    assert incomplete(db) == 20

    assert expire_leases(db.dsn) == 20                      # the hour passes
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert out is not None and (out["processed"], out["reclaimed"], out["already_done"]) == (20, 20, 40)
    assert incomplete(db) == 0
    assert_exactly_once(db, book)


def test_zombie_run_that_lost_its_claim_changes_nothing(db: Db) -> None:
    """A run stalls (SIGSTOP: its heartbeat stalls too) in the middle of its
    finalize statement; its lease runs out; another run takes the claims over;
    then the zombie's statement goes on: the fence makes it write nothing."""
    book = random_book(db.conn, 30, [DAY])
    hold_finalize(db.dsn, times=1)
    zombie = start_batch(db.dsn, "--date", DAY.isoformat(), "--lease", "1h")
    wait_for(lambda: held_at_finalize(db.dsn) == 1, what="the zombie inside its finalize statement")
    zombie_run = db.scalar("SELECT max(id) FROM batch_runs")
    assert claim_owners(db.dsn) == {zombie_run: 30}
    zombie.send_signal(signal.SIGSTOP)
    try:
        assert expire_leases(db.dsn) == 30
        taker = start_batch(db.dsn, "--date", DAY.isoformat())
        wait_for(lambda: list(claim_owners(db.dsn)) not in ([], [zombie_run]), what="the takeover")
        assert zombie_run not in claim_owners(db.dsn)
        open_finalize(db.dsn)               # the zombie's statement runs on, after the takeover committed
    finally:
        zombie.send_signal(signal.SIGCONT)
    code, zout, err = finish(zombie)
    assert zout is not None and (zout["processed"], zout["failed"], zout["reclaimed"]) == (0, 0, 0), err
    code2, out, err2 = finish(taker)
    # The zombie ends honest either way: the taker still finishing its slots (held by it: exit 75,
    # naming it), or done with them (lost to it, or found done on a last look: exit 0).
    if code == 75:
        assert zout["held"] == 30 and [h["run_id"] for h in zout["holders"]] == [out["run_id"]], zout
    else:
        assert code == 0 and zout["lost"] + zout["already_done"] == 30, (code, zout, err)
    code, err = code2, err2
    assert code == 0, err
    assert out is not None and (out["processed"], out["reclaimed"]) == (30, 30)
    assert db.all("SELECT DISTINCT batch_run_id FROM portfolio_snapshots") == [(out["run_id"],)]
    assert_exactly_once(db, book)


@pytest.mark.parametrize(("sig", "workers", "code"), [(signal.SIGTERM, 1, 143), (signal.SIGTERM, 3, 143),
                                                      (signal.SIGINT, 1, 130)],
                         ids=["SIGTERM-1-worker", "SIGTERM-3-workers", "SIGINT-1-worker"])
def test_a_signal_finishes_every_chunk_in_flight_then_stops(db: Db, sig: signal.Signals, workers: int,
                                                            code: int) -> None:
    book = random_book(db.conn, 80, [DAY])
    hold_finalize(db.dsn, times=workers)
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", str(workers))
    wait_for(lambda: held_at_finalize(db.dsn) == workers, what=f"{workers} chunk(s) in flight")
    assert incomplete(db) == 10 * workers
    proc.send_signal(sig)
    open_finalize(db.dsn)
    got, out, err = finish(proc)
    assert got == code, err
    assert out is not None and out["status"] == "interrupted"
    assert db.scalar("SELECT status FROM batch_runs WHERE id = %s", out["run_id"]) == "interrupted"
    # Every chunk in flight was finished, not abandoned; no other was started: no claim of that run is left.
    assert incomplete(db) == 0
    assert out["processed"] == 10 * workers
    code2, again, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code2 == 0, err
    assert again is not None and again["processed"] == 80 - out["processed"]
    assert_exactly_once(db, book)


def test_second_signal_stops_at_once_and_the_lease_recovers(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    hold_finalize(db.dsn, times=1)
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--lease", "1h", "--workers", "1")
    wait_for(lambda: held_at_finalize(db.dsn) == 1, what="a chunk in flight")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=10)
    assert code == 143, err
    wait_for(lambda: held_at_finalize(db.dsn) == 0, what="the server to end the dead client's statement")
    assert incomplete(db) == 10          # left for the lease
    open_finalize(db.dsn)
    assert expire_leases(db.dsn) == 10
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert out is not None and out["reclaimed"] == 10 and out["processed"] == 30
    assert_exactly_once(db, book)


def test_heartbeat_keeps_the_leases_of_a_statement_slower_than_the_lease(db: Db) -> None:
    """Finalize slowed (in the database) to 8 s, leases of 3 s: the heartbeat
    renews them while the statement runs, so a run started after the first
    lease ran out takes nothing over, and the first run finishes its chunk."""
    book = random_book(db.conn, 20, [DAY])
    slow_finalize(db.dsn, 8)
    first = start_batch(db.dsn, "--date", DAY.isoformat(), "--lease", "3s", "--workers", "1")
    wait_for(lambda: incomplete(db) == 20, what="the first run's claims")
    wait_for(lambda: db.scalar("SELECT bool_and(now() > claimed_at + interval '3 seconds')"
                               " FROM portfolio_snapshots WHERE NOT is_complete"), timeout=10,
             what="the first lease to have run out")
    assert db.scalar("SELECT bool_and(lease_expires_at > now()) FROM portfolio_snapshots") is True   # renewed
    second = start_batch(db.dsn, "--date", DAY.isoformat(), "--lease", "3s")
    code, out, err = finish(first)
    assert code == 0, err
    assert out is not None and (out["processed"], out["lost"]) == (20, 0)
    code, out2, err = finish(second)
    # The second run took nothing over: it found the slots held by a live run (exit 75), or, had the
    # first finished meanwhile, already done (exit 0); never reclaimed, never processed.
    assert out2 is not None and (out2["processed"], out2["reclaimed"]) == (0, 0), err
    assert (code, out2["held"]) == (75, 20) or (code, out2["already_done"]) == (0, 20), (code, out2)
    assert db.all("SELECT DISTINCT batch_run_id FROM portfolio_snapshots") == [(out["run_id"],)]
    unslow_finalize(db.dsn)
    assert_exactly_once(db, book)


def test_statement_timeout_fails_only_what_it_blocks_and_releases_its_claims(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    ids = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    blocker = psycopg.connect(db.dsn)
    try:
        # Hold a row lock on a portfolio of the second chunk: the one-write path skips it (SKIP LOCKED)
        # and writes the rest of the chunk; the two-step path claims it, its finalize waits, times out.
        blocker.execute("SELECT 1 FROM portfolios WHERE id = %s FOR UPDATE", (ids[15],))
        code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10",
                                            global_args=("--statement-timeout", "1s")))
    finally:
        blocker.rollback()
        blocker.close()
    assert code == 1, err
    assert out is not None and (out["processed"], out["failed"], out["status"]) == (29, 1, "partial")
    assert "canceling statement due to statement timeout" in out["failures"][0]["reason"]
    assert {f["portfolio_id"] for f in out["failures"]} == {ids[15]}
    assert incomplete(db) == 0                                     # released, not left to expire
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s", ids[15]) == 0
    code, again, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0 and again is not None and again["processed"] == 1, err
    assert_exactly_once(db, book)


def test_statement_timeout_of_a_two_step_chunk_fails_that_chunk(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    ids = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    slow_finalize(db.dsn, 3)           # two steps only, and every finalize outlasts the timeout
    try:
        code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10",
                                            *[a for pid in ids[10:20] for a in ("--portfolio", str(pid))],
                                            global_args=("--statement-timeout", "1s")))
    finally:
        unslow_finalize(db.dsn)
    assert code == 1, err
    assert out is not None and (out["processed"], out["failed"], out["status"]) == (0, 10, "failed")
    assert "canceling statement due to statement timeout" in out["failures"][0]["reason"]
    assert incomplete(db) == 0                                     # released, not left to expire
    code, again, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0 and again is not None and again["processed"] == 30, err
    assert_exactly_once(db, book)


def test_lost_connection_fails_only_that_chunk(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    hold_finalize(db.dsn, times=1)
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", "1")
    wait_for(lambda: held_at_finalize(db.dsn) == 1, what="the first chunk in flight")
    killed = db.all("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'pnl/%'")
    assert killed and all(ok for (ok,) in killed)
    code, out, err = finish(proc)
    assert code == 1, err
    assert out is not None and (out["processed"], out["failed"]) == (20, 10)
    assert incomplete(db) == 0
    code, again, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0 and again is not None and again["processed"] == 10, err
    assert_exactly_once(db, book)


def test_cleanup_lists_and_deletes_only_old_unfinished_claims(db: Db) -> None:
    pids = [db.scalar("INSERT INTO portfolios (name) VALUES (%s) RETURNING id", f"p{i}") for i in range(3)]
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id, claimed_at,"
               " lease_expires_at) VALUES"
               " (%s, '2026-06-01', false, 7, now() - interval '2 hours', now() - interval '105 minutes'),"
               " (%s, '2026-06-02', false, 7, now() - interval '2 hours', now() - interval '105 minutes'),"
               " (%s, '2026-06-01', false, 8, now() - interval '10 minutes', now() + interval '5 minutes')",
               *pids)
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, net_asset_value, claimed_at)"
               " VALUES (%s, '2026-05-29', 1, now() - interval '3 days')", pids[0])
    before = db.all("SELECT * FROM portfolio_snapshots ORDER BY id")
    # The client's time zone must not matter: times are compared in the database.
    env = {"TZ": "Pacific/Kiritimati", "PGTZ": "America/Los_Angeles"}
    res = run_cli("cleanup", "--older-than", "1h", "--dry-run", "--json", dsn=db.dsn, env=env)
    assert res.code == 0, res.err
    listed = json.loads(res.out)["claims"]
    assert sorted((c["portfolio_id"], c["snapshot_date"]) for c in listed) == [
        (pids[0], "2026-06-01"), (pids[1], "2026-06-02")]
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == before

    res = run_cli("cleanup", "--older-than", "1h", dsn=db.dsn, env=env)
    assert res.code == 1 and "--yes" in res.err                      # no terminal: refuse
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == before

    res = run_cli("cleanup", "--older-than", "1h", "--date", "2026-06-02", "--yes", "--json", dsn=db.dsn, env=env)
    assert res.code == 0 and json.loads(res.out)["deleted"] == 1
    res = run_cli("cleanup", "--older-than", "90m", "--yes", dsn=db.dsn, env=env)
    assert res.code == 0 and "deleted 1" in res.out
    # Left: the young claim and the complete snapshot.
    assert db.all("SELECT portfolio_id, is_complete FROM portfolio_snapshots ORDER BY id") == [
        (pids[2], False), (pids[0], True)]
    bad = run_cli("cleanup", "--older-than", "soon", dsn=db.dsn)
    assert bad.code == 2 and "not a duration" in bad.err


@pytest.mark.parametrize("command", [("verify",), ("status",), ("batch", "undo", "--from", DAY.isoformat(), "--yes"),
                                     ("migrate",)])
def test_sigterm_to_any_command_ends_it_with_its_one_line_and_json(db: Db, command: tuple[str, ...]) -> None:
    """A batch run stops gracefully on SIGTERM (above); every other command died
    silently (a supervisor's stop, a deploy): --json printed nothing at all. Now
    it prints its one JSON object and exits 143, and changes nothing more."""
    import os
    import subprocess
    import sys

    from tests.procs import ROOT, wait_for

    random_book(db.conn, 5, [DAY])
    assert run_cli("batch", "run", "--date", DAY.isoformat(), dsn=db.dsn).code == 0
    before = db.all("SELECT id, net_asset_value FROM portfolio_snapshots ORDER BY id")
    if command == ("migrate",):    # a migration to apply, which needs the snapshot table (psycopg, yoyo)
        assert run_cli("rollback", "--to", "0012", "--yes", dsn=db.dsn).code == 0
    blocker = psycopg.connect(db.dsn)
    try:
        # every one of these commands reads the snapshot table: it waits for this lock
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE portfolio_snapshots IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *command, "--json"],
                                env={**os.environ, "DATABASE_URL": db.dsn}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: db.scalar("SELECT count(*) FROM pg_locks WHERE NOT granted"
                                   " AND relation = 'portfolio_snapshots'::regclass") > 0,
                 what="the command to wait for the lock")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        blocker.rollback()
        blocker.close()
    assert proc.returncode == 143, (out, err)
    assert json.loads(out) == {"error": json.loads(out)["error"], "exit_code": 143}
    assert "SIGTERM" in json.loads(out)["error"] and "Traceback" not in err, err
    assert db.all("SELECT id, net_asset_value FROM portfolio_snapshots ORDER BY id") == before
