"""`pnl verify --since DATE`: the date-bounded checks look at snapshots and
marks on or after DATE only (each snapshot still against its previous one,
however old); without it, everything. The same bound from psql is the setting
pnl.verify_since."""

from __future__ import annotations

import json
from datetime import date

import psycopg

from pnl.queries import sql
from tests.conftest import Db, run_cli
from tests.data import random_book

DAYS = [date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3), date(2026, 6, 4)]


def checks(db: Db, *args: str) -> dict[str, int]:
    res = run_cli("verify", *args, "--json", dsn=db.dsn)
    assert res.code in (0, 1) and "Traceback" not in res.err, res.err
    out = json.loads(res.out)
    assert all(c["error"] is None for c in out["checks"]), out
    return {c["check"]: c["rows"] for c in out["checks"]}


def build(db: Db) -> int:
    book = random_book(db.conn, 20, DAYS)
    res = run_cli("batch", "backfill", "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(), dsn=db.dsn)
    assert res.code == 0, res.err
    return min(book.balances)


def test_since_checks_the_chain_from_the_bound_against_older_snapshots(db: Db) -> None:
    pid = build(db)
    assert checks(db)["broken_equity_chain"] == 0
    # P&L applied twice on the second date: that NAV and the third date's opening no longer follow
    db.execute("UPDATE portfolio_snapshots SET net_asset_value = net_asset_value + 5"
               " WHERE portfolio_id = %s AND snapshot_date = %s", pid, DAYS[1])
    assert checks(db)["broken_equity_chain"] == 2                                  # full: both
    assert checks(db, "--since", DAYS[1].isoformat())["broken_equity_chain"] == 2
    # the third date is checked against the second, which lies before the bound
    assert checks(db, "--since", DAYS[2].isoformat())["broken_equity_chain"] == 1
    assert checks(db, "--since", DAYS[3].isoformat())["broken_equity_chain"] == 0
    res = run_cli("verify", "--since", DAYS[3].isoformat(), dsn=db.dsn)
    assert res.code == 0 and f"since {DAYS[3]}" in res.out and "healthy" in res.out, res.out
    res = run_cli("verify", "--since", DAYS[2].isoformat(), dsn=db.dsn)
    assert res.code == 1 and "NOT healthy" in res.out


def test_since_bounds_the_marks_check_and_psql_sets_the_same_bound(db: Db) -> None:
    build(db)
    symbol = db.scalar("SELECT symbol FROM valuation_marks WHERE mark_date = %s ORDER BY symbol LIMIT 1", DAYS[1])
    db.execute("UPDATE market_prices SET close_price = close_price + 1 WHERE symbol = %s AND price_date = %s",
               symbol, DAYS[1])                                   # a correction after the date was valued
    assert checks(db)["marks_differ_from_prices"] == 1
    assert checks(db, "--since", DAYS[1].isoformat())["marks_differ_from_prices"] == 1
    assert checks(db, "--since", DAYS[2].isoformat())["marks_differ_from_prices"] == 0
    # psql: SET pnl.verify_since before the file; RESET (or a new session) = everything again
    text = sql("verify/marks_differ_from_prices")       # the file as psql -f reads it
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(f"SET pnl.verify_since = '{DAYS[2].isoformat()}'")
        assert conn.execute(text).fetchall() == []
        conn.execute("RESET pnl.verify_since")
        assert len(conn.execute(text).fetchall()) == 1


def test_since_skips_duplicates_only_where_the_database_forbids_them(db: Db) -> None:
    build(db)
    assert checks(db, "--since", DAYS[0].isoformat())["duplicate_snapshots"] == 0
    with psycopg.connect(db.dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL pnl.verify_since = '2026-06-01'")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN (ANALYZE, COSTS OFF) " + sql("verify/duplicate_snapshots").rstrip().rstrip(";")).fetchall())
    assert "never executed" in plan, plan       # the scan is gated off: uq_portfolio_snapshot_date holds


def test_a_bad_since_is_one_line(db: Db) -> None:
    res = run_cli("verify", "--since", "2026-13-01", dsn=db.dsn)
    assert res.code == 2 and "Traceback" not in res.err and "is not a date" in res.err
