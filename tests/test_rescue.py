"""End to end: a database corrupted by the legacy batch, rescued step by step."""

from __future__ import annotations

import json
import threading
from datetime import date
from decimal import Decimal as D

import psycopg

from tests.conftest import Db, run_cli
from tests.data import add_portfolio, add_positions, add_prices
from tests.reference import Position, latest_close, replay

DAYS = [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)]
PRICES = {
    "AAA": {date(2026, 2, 27): D(50), DAYS[0]: D(52), DAYS[1]: D("53.5"), DAYS[2]: D(55)},
    "BBB": {date(2026, 2, 27): D(20), DAYS[0]: D(19), DAYS[1]: D(21), DAYS[2]: D("20.25")},
    "OPT": {date(2026, 2, 27): D(3), DAYS[0]: D("3.4"), DAYS[1]: D("2.9"), DAYS[2]: D("3.1")},
}
BOOK = {
    "long": (D(10000), [Position("AAA", D(100), date(2026, 1, 5), D(40))]),
    "short": (D(5000), [Position("BBB", D(-200), date(2026, 1, 5), D(25))]),
    "options": (D(-2000), [Position("OPT", D(3), date(2026, 1, 5), D(2), multiplier=D(100)),
                           Position("AAA", D(10), date(2026, 1, 5), D(45))]),
}


def legacy_batch(dsn: str, day: date, previous: date, check: bool = False) -> None:
    """The old batch, as it was: equity += pnl, then insert a snapshot, with no check at all
    or (check=True) after checking that none exists yet: either way AFTER the increment."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for pid, positions in conn.execute("SELECT p.id, array_agg(ARRAY[s.symbol, s.quantity::text,"
                                           " s.multiplier::text]) FROM portfolios p JOIN positions s"
                                           " ON s.portfolio_id = p.id GROUP BY p.id ORDER BY p.id").fetchall():
            pnl = sum(D(q) * D(m) * (latest_close(PRICES, sym, day) - latest_close(PRICES, sym, previous))
                      for sym, q, m in positions)
            with conn.transaction():
                equity = conn.execute("UPDATE portfolios SET equity_balance = equity_balance + %s WHERE id = %s"
                                      " RETURNING equity_balance", (pnl, pid)).fetchone()[0]
                if check and conn.execute("SELECT 1 FROM portfolio_snapshots WHERE portfolio_id = %s"
                                          " AND snapshot_date = %s", (pid, day)).fetchone():
                    continue
                conn.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, net_asset_value,"
                             " daily_pnl) VALUES (%s, %s, %s, %s)", (pid, day, equity, pnl))


def rows(db: Db) -> list[tuple]:
    return db.all("SELECT * FROM portfolio_snapshots ORDER BY id")


def test_rescue_a_corrupted_legacy_database(empty_db: Db) -> None:
    db = empty_db
    assert run_cli("migrate", "--to", "0001", dsn=db.dsn).code == 0        # the legacy schema
    add_prices(db.conn, PRICES)
    pids = {}
    for name, (balance, positions) in BOOK.items():
        pids[name] = add_portfolio(db.conn, name, balance)
        add_positions(db.conn, pids[name], positions)

    # The incident: day 1 fine; day 2 run four times, then twice at once; day 3 once.
    legacy_batch(db.dsn, DAYS[0], date(2026, 2, 27))
    for _ in range(4):
        legacy_batch(db.dsn, DAYS[1], DAYS[0])
    racers = [threading.Thread(target=legacy_batch, args=(db.dsn, DAYS[1], DAYS[0])) for _ in range(2)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    legacy_batch(db.dsn, DAYS[2], DAYS[1])
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 3 * (1 + 6 + 1)
    long_equity = db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pids["long"])
    clean = replay(BOOK["long"][0], BOOK["long"][1], PRICES, [], DAYS)[-1].nav
    assert long_equity == clean + 5 * 100 * (D("53.5") - 52)                 # day 2 applied six times

    # 1. migrate applies what it can and refuses the idempotency migration, changing nothing of it.
    res = run_cli("migrate", dsn=db.dsn)
    assert res.code == 1 and "3 (portfolio_id, snapshot_date) groups" in res.err and "pnl dedupe" in res.err
    assert db.scalar("SELECT to_regclass('snapshot_dedupe_audit') IS NOT NULL") is True
    assert db.scalar("SELECT count(*) FROM information_schema.columns WHERE column_name = 'is_complete'") == 0
    corrupted = rows(db)

    # 2. dry run: the plan, nothing changed.
    plan = json.loads(run_cli("dedupe", "--dry-run", "--json", dsn=db.dsn).out)
    assert (plan["groups"], plan["deleted"]) == (3, 15)
    assert rows(db) == corrupted

    # 3. dedupe archives and deletes; 4. restore brings every row back; 5. dedupe again.
    first = json.loads(run_cli("dedupe", "--yes", "--json", dsn=db.dsn).out)
    assert (first["deleted"], first["remaining_duplicate_groups"]) == (15, 0)
    assert db.scalar("SELECT count(*) FROM snapshot_dedupe_audit WHERE rescue_run_id = %s", first["run_id"]) == 15
    assert run_cli("dedupe", "--restore", str(first["run_id"]), "--yes", dsn=db.dsn).code == 0
    assert rows(db) == corrupted
    second = json.loads(run_cli("dedupe", "--yes", "--batch-size", "2", "--json", dsn=db.dsn).out)
    assert second["deleted"] == 15 and sorted(second["affected_portfolios"]) == sorted(pids.values())

    # 6. migrate succeeds.
    res = run_cli("migrate", dsn=db.dsn)
    assert res.code == 0, res.err
    assert db.scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'uq_portfolio_snapshot_date'") == 1

    # 7. verify flags the broken chain (day 3 was computed from the inflated equity).
    res = run_cli("verify", "--json", dsn=db.dsn)
    assert res.code == 1
    checks = {c["check"]: c for c in json.loads(res.out)["checks"]}
    assert checks["broken_equity_chain"]["rows"] == 3
    assert {e["snapshot_date"] for e in checks["broken_equity_chain"]["examples"]} == {DAYS[2].isoformat()}
    assert checks["duplicate_snapshots"]["rows"] == 0 and checks["unique_constraint"]["rows"] == 0

    # 8. repair: dry run first (nothing changes), then for real.
    before_repair = rows(db)
    dry = json.loads(run_cli("repair", "--all-broken", "--dry-run", "--json", dsn=db.dsn).out)
    assert dry["dry_run"] and dry["changed"] == 3
    assert rows(db) == before_repair
    res = run_cli("repair", "--all-broken", "--yes", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["changed"] == 3
    assert db.scalar("SELECT count(*) FROM snapshot_repair_audit") == 3

    # 9. verify is clean.
    res = run_cli("verify", dsn=db.dsn)
    assert res.code == 0, res.out
    assert "healthy" in res.out

    # 10. every NAV and equity equals a clean replay computed here, independently.
    for name, (balance, positions) in BOOK.items():
        chain = replay(balance, positions, PRICES, [], DAYS)
        navs = db.all("SELECT snapshot_date, net_asset_value FROM portfolio_snapshots WHERE portfolio_id = %s"
                      " ORDER BY snapshot_date", pids[name])
        assert navs == [(s.day, s.nav) for s in chain], name
        assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pids[name]) == chain[-1].nav

    # And the safe batch carries on from the repaired chain.
    add_prices(db.conn, {"AAA": {date(2026, 3, 5): D(56)}, "BBB": {date(2026, 3, 5): D(20)},
                         "OPT": {date(2026, 3, 5): D(3)}})
    assert run_cli("batch", "run", "--date", "2026-03-05", dsn=db.dsn).code == 0
    assert run_cli("verify", dsn=db.dsn).code == 0


def test_repair_refuses_without_an_anchor_and_on_bad_input(db: Db) -> None:
    pid = add_portfolio(db.conn, "lonely", 100)
    add_prices(db.conn, {"AAA": {DAYS[0]: D(1)}})
    assert run_cli("batch", "run", "--date", DAYS[0].isoformat(), dsn=db.dsn).code == 0
    res = run_cli("repair", "--portfolio", str(pid), "--from", DAYS[0].isoformat(), "--yes", dsn=db.dsn)
    assert res.code == 2 and "no complete snapshot before" in res.err
    res = run_cli("repair", "--portfolio", "99999", "--from", DAYS[0].isoformat(), "--yes", dsn=db.dsn)
    assert res.code == 2 and "does not exist" in res.err
    res = run_cli("repair", "--portfolio", str(pid), dsn=db.dsn)
    assert res.code == 2 and "--from" in res.err
    res = run_cli("repair", "--all-broken", "--yes", dsn=db.dsn)
    assert res.code == 0 and "nothing to repair" in res.out


def test_the_legacy_batch_still_corrupts_equity_on_the_new_schema(db: Db) -> None:
    """Why the runbooks say: stop the legacy batch first. The unique constraint stops a
    second snapshot row, not the legacy `equity += pnl` that runs before its check."""
    add_prices(db.conn, PRICES)
    for name, (balance, positions) in BOOK.items():
        add_positions(db.conn, add_portfolio(db.conn, name, balance), positions)
    assert run_cli("batch", "run", "--date", DAYS[0].isoformat(), dsn=db.dsn).code == 0
    assert run_cli("verify", dsn=db.dsn).code == 0
    snapshots = db.all("SELECT * FROM portfolio_snapshots ORDER BY id")
    legacy_batch(db.dsn, DAYS[0], date(2026, 2, 27), check=True)       # overlapping with the new batch
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == snapshots    # no duplicate row...
    res = run_cli("verify", "--json", dsn=db.dsn)                                   # ...but equity applied twice
    assert res.code == 1
    mismatch = next(c for c in json.loads(res.out)["checks"] if c["check"] == "equity_mismatch")
    assert mismatch["rows"] == 3
