"""Crash safety with real processes, real signals and real database faults."""

from __future__ import annotations

import json
import signal
import time
from datetime import date

import psycopg

from tests.conftest import Db, run_cli
from tests.data import Book, random_book
from tests.procs import finish, start_batch, wait_for
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
    victim = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "20", "--lease", "2s", "--workers", "1",
                         pause=60)
    wait_for(lambda: incomplete(db) == 20, what="the first chunk to be claimed")
    victim.kill()
    victim.wait()
    dead_run = db.scalar("SELECT max(id) FROM batch_runs")
    assert db.scalar("SELECT status FROM batch_runs WHERE id = %s", dead_run) == "running"

    # While the lease is live, the dead run's claims are respected: they are held (exit 75, naming it).
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat(), "--lease", "2s"))
    assert code == 75, err
    assert out is not None and (out["processed"], out["held"], out["reclaimed"]) == (40, 20, 0)
    assert [h["run_id"] for h in out["holders"]] == [dead_run]
    assert incomplete(db) == 20

    time.sleep(2.2)
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert out is not None and (out["processed"], out["reclaimed"], out["already_done"]) == (20, 20, 40)
    assert incomplete(db) == 0
    assert_exactly_once(db, book)


def test_zombie_run_that_lost_its_claim_changes_nothing(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    zombie = start_batch(db.dsn, "--date", DAY.isoformat(), "--lease", "1s", pause=4)
    wait_for(lambda: incomplete(db) == 30, what="the zombie's claims")
    time.sleep(1.2)  # its lease has expired; it is still alive, asleep
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert out is not None and (out["processed"], out["reclaimed"]) == (30, 30)
    after_takeover = db.all("SELECT * FROM portfolio_snapshots ORDER BY id"), db.all(
        "SELECT * FROM portfolios ORDER BY id")

    code, zout, err = finish(zombie)
    assert code == 0, err
    assert zout is not None and (zout["processed"], zout["lost"], zout["failed"]) == (0, 30, 0)
    # The zombie wrote nothing: same rows, same equity (one application).
    assert (db.all("SELECT * FROM portfolio_snapshots ORDER BY id"),
            db.all("SELECT * FROM portfolios ORDER BY id")) == after_takeover
    assert_exactly_once(db, book)


def test_sigterm_finishes_the_chunk_in_flight_then_stops(db: Db) -> None:
    book = random_book(db.conn, 60, [DAY])
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", "1", pause=0.5)
    wait_for(lambda: incomplete(db) == 10, what="a chunk in flight")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 143, err
    assert out is not None and out["status"] == "interrupted"
    assert db.scalar("SELECT status FROM batch_runs WHERE id = %s", out["run_id"]) == "interrupted"
    # The chunk in flight was finished, not abandoned: no claim of that run is left.
    assert incomplete(db) == 0
    assert 10 <= out["processed"] < 60 and out["processed"] % 10 == 0
    code, again, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert again is not None and again["processed"] == 60 - out["processed"]
    assert_exactly_once(db, book)


def test_sigterm_with_several_workers_finishes_every_chunk_in_flight(db: Db) -> None:
    book = random_book(db.conn, 80, [DAY])
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", "3", pause=0.5)
    wait_for(lambda: incomplete(db) == 30, what="three chunks in flight")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 143, err
    assert out is not None and out["status"] == "interrupted" and out["processed"] % 10 == 0
    assert 30 <= out["processed"] < 80
    assert incomplete(db) == 0
    assert finish(start_batch(db.dsn, "--date", DAY.isoformat()))[0] == 0
    assert_exactly_once(db, book)


def test_sigint_also_stops_gracefully_with_130(db: Db) -> None:
    random_book(db.conn, 30, [DAY])
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", "1", pause=0.5)
    wait_for(lambda: incomplete(db) == 10, what="a chunk in flight")
    proc.send_signal(signal.SIGINT)
    code, out, _ = finish(proc)
    assert code == 130 and out is not None and out["status"] == "interrupted"
    assert incomplete(db) == 0


def test_second_signal_stops_at_once_and_the_lease_recovers(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--lease", "1s", "--workers", "1",
                       pause=5)
    wait_for(lambda: incomplete(db) == 10, what="a chunk in flight")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=10)
    assert code == 143, err
    assert incomplete(db) == 10          # left for the lease
    time.sleep(1.1)
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert out is not None and out["reclaimed"] == 10 and out["processed"] == 30
    assert_exactly_once(db, book)


def test_statement_timeout_fails_only_that_chunk_and_releases_its_claims(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    ids = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    blocker = psycopg.connect(db.dsn)
    try:
        # Hold a row lock on a portfolio of the second chunk: its finalize must wait, then time out.
        blocker.execute("SELECT 1 FROM portfolios WHERE id = %s FOR UPDATE", (ids[15],))
        code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10",
                                            global_args=("--statement-timeout", "1s")))
    finally:
        blocker.rollback()
        blocker.close()
    assert code == 1, err
    assert out is not None and (out["processed"], out["failed"], out["status"]) == (20, 10, "partial")
    assert "canceling statement due to statement timeout" in out["failures"][0]["reason"]
    assert {f["portfolio_id"] for f in out["failures"]} == set(ids[10:20])
    assert incomplete(db) == 0                                     # released, not left to expire
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = ANY(%s)", ids[10:20]) == 0
    code, again, err = finish(start_batch(db.dsn, "--date", DAY.isoformat()))
    assert code == 0 and again is not None and again["processed"] == 10, err
    assert_exactly_once(db, book)


def test_lost_connection_fails_only_that_chunk(db: Db) -> None:
    book = random_book(db.conn, 30, [DAY])
    proc = start_batch(db.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", "1", pause=1.0)
    wait_for(lambda: incomplete(db) == 10, what="the first chunk in flight")
    killed = db.all("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pnl'")
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
