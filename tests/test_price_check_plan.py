"""The price check (batch/check_run_prices.sql) is planned like the chunk
statements (batch/plan_chunk_statements.sql): planned while the snapshot table
was empty (a first run, or runs started right after a TRUNCATE) and executed
while another run fills it, its chain-end probes were sequential scans, one
per portfolio: in the benchmark's 4 runs at once, three price checks ran for
minutes. Asserted on the server's own counters: a run over an empty, analyzed
snapshot table scans it by index only."""

from __future__ import annotations

from pnl.queries import sql
from tests.conftest import Db, quiet_stat, run_cli
from tests.data import random_book
from tests.test_equity_as_of import CALENDAR


def scans(db: Db, moved_from: tuple | None = None) -> tuple[int, int]:
    return quiet_stat(db, "SELECT seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_user_tables"
                          " WHERE relname = 'portfolio_snapshots'", moved_from)


def test_a_run_over_an_empty_analyzed_snapshot_table_never_scans_it_sequentially(db: Db) -> None:
    random_book(db.conn, 40, CALENDAR, seed=48)
    db.execute("TRUNCATE portfolio_snapshots")
    db.execute("ANALYZE portfolio_snapshots")
    before = scans(db)
    res = run_cli("batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[2].isoformat(),
                  dsn=db.dsn)
    assert res.code == 0, res.err
    seq, idx = scans(db, before)
    assert idx > before[1]
    assert seq == before[0], f"{seq - before[0]} sequential scan(s) of portfolio_snapshots"
    # after the reading: this count(*) is itself a sequential scan
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 40 * 3


def test_the_premise_an_empty_analyzed_table_plans_the_probe_as_a_sequential_scan(db: Db) -> None:
    """Why the settings are needed: without them the same statement, planned on the empty
    table, probes each portfolio's chain end with a sequential scan."""
    random_book(db.conn, 40, CALENDAR, seed=49)
    db.execute("TRUNCATE portfolio_snapshots")
    db.execute("ANALYZE portfolio_snapshots")
    db.execute("PREPARE price_check(date, bigint[], date) AS " + sql("batch/check_run_prices"))
    plan = "\n".join(r[0] for r in db.all(
        f"EXPLAIN EXECUTE price_check('{CALENDAR[2]}', NULL, '{CALENDAR[0]}')"))
    assert "Seq Scan on portfolio_snapshots" in plan, plan


def test_status_over_an_empty_analyzed_snapshot_table_never_scans_it_sequentially(db: Db) -> None:
    """pnl status probes the chain end of every portfolio whose equity_as_of is NULL
    (all of them after a TRUNCATE): index probes too."""
    random_book(db.conn, 40, CALENDAR, seed=50)
    db.execute("TRUNCATE portfolio_snapshots")
    db.execute("ANALYZE portfolio_snapshots")
    before = scans(db)
    res = run_cli("status", "--no-verify", dsn=db.dsn)
    assert res.code == 0, res.err
    seq, idx = scans(db, before)
    assert idx >= before[1] + 40
    # one scan may be status/unfinished_claims' (once per call, whatever the book); probes
    # planned as sequential scans would be one per portfolio: 40
    assert seq - before[0] <= 1, f"{seq - before[0]} sequential scan(s) of portfolio_snapshots"
