"""The P&L numbers, against values computed by hand (and by tests/reference.py)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

from tests.conftest import Db, run_cli
from tests.data import add_flow, add_portfolio, add_positions, add_prices
from tests.reference import Position, replay

FRI, MON, TUE, WED, THU, FRI2 = (date(2026, 2, 27), date(2026, 3, 2), date(2026, 3, 3),
                                 date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6))
PRICES = {
    "AAA": {FRI: D(95), MON: D(100), TUE: D(102), WED: D(101), THU: D(104), FRI2: D(105)},
    "BBB": {FRI: D(51), MON: D(48), TUE: D(47), FRI2: D(49)},          # no close Wed/Thu
    "OPT": {FRI: D("3.00"), MON: D("3.50"), TUE: D("3.25"), FRI2: D("4.10")},
    "NEW": {WED: D(21), THU: D(24)},
}
POSITIONS = [
    Position("AAA", D(10), date(2026, 2, 1), D(90)),                    # long
    Position("BBB", D(-5), date(2026, 2, 1), D(50)),                    # short
    Position("OPT", D(2), date(2026, 2, 1), D(3), multiplier=D(100)),   # option contracts
    Position("NEW", D(4), WED, D(20), exit_date=THU, exit_price=D(25)),  # opened and closed in a gap
]

SNAPSHOT_COLUMNS = ("opening_equity, daily_pnl, capital_flow, net_asset_value, daily_return, cumulative_pnl,"
                    " long_value, short_value, gross_exposure, net_exposure, num_positions, is_complete")


# The same market with Wed and Thu as holidays: no close at all on those days, so
# they are not price dates, and Fri is computed across a gap of several days.
HOLIDAY_PRICES = {s: {d: px for d, px in by_day.items() if d not in (WED, THU)} for s, by_day in PRICES.items()}


def setup_book(db: Db, prices: dict = PRICES) -> tuple[int, int]:
    add_prices(db.conn, prices)
    p1 = add_portfolio(db.conn, "hand-computed", D(10000))
    add_positions(db.conn, p1, POSITIONS)
    add_flow(db.conn, p1, WED, 1000)
    add_flow(db.conn, p1, FRI2, -200)
    p2 = add_portfolio(db.conn, "cash only", 0)
    add_flow(db.conn, p2, MON, 500)
    return p1, p2


def snapshot(db: Db, pid: int, day: date) -> tuple:
    return db.one(f"SELECT {SNAPSHOT_COLUMNS} FROM portfolio_snapshots WHERE portfolio_id = %s"
                  " AND snapshot_date = %s", pid, day)


def test_hand_computed_chain_long_short_option_flow_and_gap(db: Db) -> None:
    p1, p2 = setup_book(db, HOLIDAY_PRICES)
    for day in (MON, TUE, FRI2):          # Wed and Thu are holidays: a gap of several days
        res = run_cli("batch", "run", "--date", day.isoformat(), "--json", dsn=db.dsn)
        assert res.code == 0, res.err
        out = json.loads(res.out)
        assert out["processed"] == 2 and [d["date"] for d in out["dates"]] == [day.isoformat()]

    # Mon: B = Fri 27 Feb (latest price date before; no snapshot yet).
    # AAA 10*(100-95)=50, BBB -5*(48-51)=15, OPT 2*100*(3.50-3.00)=100 -> 165
    assert snapshot(db, p1, MON) == (
        D("10000.0000"), D("165.0000"), D("0.0000"), D("10165.0000"), D("0.0165000000"), D("165.0000"),
        D("1700.0000"), D("-240.0000"), D("1940.0000"), D("1460.0000"), 3, True)
    # Tue: AAA 10*2=20, BBB -5*(47-48)=5, OPT 200*(3.25-3.50)=-50 -> -25
    assert snapshot(db, p1, TUE) == (
        D("10165.0000"), D("-25.0000"), D("0.0000"), D("10140.0000"), D("-0.0024594196"), D("140.0000"),
        D("1670.0000"), D("-235.0000"), D("1905.0000"), D("1435.0000"), 3, True)
    # Fri 6 Mar, B = Tue: AAA 10*3=30, BBB -5*(49-47)=-10, OPT 200*(4.10-3.25)=170,
    # NEW opened Wed at 20 and closed Thu at 25 (exit price, not a close): 4*5=20 -> 210.
    # Flows in (Tue, Fri]: +1000 - 200 = 800. NAV = 10140 + 210 + 800.
    assert snapshot(db, p1, FRI2) == (
        D("10140.0000"), D("210.0000"), D("800.0000"), D("11150.0000"), D("0.0207100592"), D("350.0000"),
        D("1870.0000"), D("-245.0000"), D("2115.0000"), D("1625.0000"), 3, True)
    # Opening equity 0: daily_return is NULL, the flow still counts.
    assert snapshot(db, p2, MON)[:6] == (D(0), D(0), D(500), D(500), None, D(0))
    # Equity is the latest NAV (set, not accumulated).
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", p1) == D("11150.0000")
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", p2) == D("500.0000")

    # And the independent reference agrees on every number.
    chain = replay(D(10000), POSITIONS, HOLIDAY_PRICES, [(WED, D(1000)), (FRI2, D(-200))], [MON, TUE, FRI2])
    for snap in chain:
        row = snapshot(db, p1, snap.day)
        assert (row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[10]) == (
            snap.opening, snap.pnl, snap.flow, snap.nav, snap.daily_return, snap.cumulative,
            snap.long_value, snap.short_value, snap.num_positions)


def test_missing_price_fails_only_that_portfolio_and_releases_its_claim(db: Db) -> None:
    p1, p2 = setup_book(db)
    p3 = add_portfolio(db.conn, "unpriced", 1000)
    add_positions(db.conn, p3, [Position("ZZZ", D(1), date(2026, 2, 1), D(10)),
                                Position("AAA", D(1), date(2026, 2, 1), D(10))])
    res = run_cli("batch", "run", "--date", MON.isoformat(), "--json", dsn=db.dsn)
    assert res.code == 1
    out = json.loads(res.out)
    assert (out["processed"], out["failed"], out["already_done"]) == (2, 1, 0)
    assert out["failures"][0]["portfolio_id"] == p3 and "ZZZ" in out["failures"][0]["reason"]
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s", p3) == 0
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", p3) == D(1000)
    assert db.scalar("SELECT status FROM batch_runs WHERE id = %s", out["run_id"]) == "partial"
    # Once the price arrives, the next run processes exactly that portfolio.
    add_prices(db.conn, {"ZZZ": {MON: D(12)}})
    res = run_cli("batch", "run", "--date", MON.isoformat(), "--json", dsn=db.dsn)
    assert res.code == 0
    assert (json.loads(res.out)["processed"], json.loads(res.out)["already_done"]) == (1, 2)
    # start: ZZZ had no close <= B (Fri), so its entry price: 1*(12-10) = 2; AAA 1*(100-95) = 5.
    assert snapshot(db, p3, MON)[1] == D("7.0000")


def test_second_run_of_a_date_changes_nothing(db: Db) -> None:
    setup_book(db)
    assert run_cli("batch", "run", "--date", MON.isoformat(), dsn=db.dsn).code == 0
    before = db.all("SELECT * FROM portfolio_snapshots ORDER BY id"), db.all("SELECT * FROM portfolios ORDER BY id")
    res = run_cli("batch", "run", "--date", MON.isoformat(), "--json", dsn=db.dsn)
    assert res.code == 0
    out = json.loads(res.out)
    assert (out["processed"], out["already_done"], out["failed"]) == (0, 2, 0)
    after = db.all("SELECT * FROM portfolio_snapshots ORDER BY id"), db.all("SELECT * FROM portfolios ORDER BY id")
    assert after == before


def test_a_date_before_the_chain_is_not_owed_and_not_forked(db: Db) -> None:
    """The chains start on Tue (the first run); Mon is before them: not computed
    behind their back, not a failure (exit 0), and the text hints at undo."""
    p1, _ = setup_book(db)
    assert run_cli("batch", "run", "--date", TUE.isoformat(), dsn=db.dsn).code == 0
    before = db.all("SELECT * FROM portfolio_snapshots ORDER BY id"), db.all("SELECT * FROM portfolios ORDER BY id")
    res = run_cli("batch", "run", "--date", MON.isoformat(), "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert (out["before_chain"], out["processed"], out["failed"]) == (2, 0, 0)
    assert out["dates"] == [{"date": MON.isoformat(), "processed": 0, "already_done": 0, "before_chain": 2,
                             "held": 0, "failed": 0, "lost": 0}]
    assert (db.all("SELECT * FROM portfolio_snapshots ORDER BY id"),
            db.all("SELECT * FROM portfolios ORDER BY id")) == before
    text = run_cli("batch", "run", "--date", MON.isoformat(), dsn=db.dsn)
    assert text.code == 0 and "before chain 2" in text.out and "pnl batch undo --from" in text.err


def test_backfill_runs_each_price_date_in_order(db: Db) -> None:
    p1, _ = setup_book(db)
    # BBB and OPT have no close on Wed and Thu: 2 of 4 held symbols carried forward.
    res = run_cli("batch", "backfill", "--from", "2026-03-01", "--to", "2026-03-31", "--max-stale", "2", "--json",
                  dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)["run"]
    assert [(d["date"], d["names"]) for d in out["stale_symbols"]["dates"]] == [
        ("2026-03-04", ["BBB", "OPT"]), ("2026-03-05", ["BBB", "OPT"])]
    assert [r["date"] for r in out["dates"]] == ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06"]
    assert all(r["processed"] == 2 for r in out["dates"])
    days = [MON, TUE, WED, THU, FRI2]
    chain = replay(D(10000), POSITIONS, PRICES, [(WED, D(1000)), (FRI2, D(-200))], days)
    navs = db.all("SELECT snapshot_date, net_asset_value FROM portfolio_snapshots WHERE portfolio_id = %s"
                  " ORDER BY snapshot_date", p1)
    assert navs == [(s.day, s.nav) for s in chain]
    # Backfilling again is a no-op: ONE cheap run, every date already done.
    runs = db.scalar("SELECT count(*) FROM batch_runs")
    again = json.loads(run_cli("batch", "backfill", "--from", "2026-03-01", "--to", "2026-03-31", "--json",
                               dsn=db.dsn).out)["run"]
    assert (again["processed"], again["already_done"], again["status"]) == (0, 10, "succeeded")
    assert db.scalar("SELECT count(*) FROM batch_runs") == runs + 1


def test_only_the_named_portfolios(db: Db) -> None:
    p1, p2 = setup_book(db)
    res = run_cli("batch", "run", "--date", MON.isoformat(), "--portfolio", str(p2), "--json", dsn=db.dsn)
    assert res.code == 0 and json.loads(res.out)["processed"] == 1
    assert db.all("SELECT portfolio_id FROM portfolio_snapshots") == [(p2,)]


def test_many_failures_are_counted_but_not_all_kept(db: Db) -> None:
    db.execute("INSERT INTO portfolios (name, equity_balance) SELECT 'u' || g, 1 FROM generate_series(1, 1100) g")
    db.execute("INSERT INTO positions (portfolio_id, symbol, quantity, entry_date, entry_price)"
               " SELECT id, 'NOPRICE', 1, '2026-01-01', 1 FROM portfolios")
    add_prices(db.conn, {"OTHER": {MON: D(1)}})          # MON is a price date; NOPRICE has no close
    res = run_cli("batch", "run", "--date", MON.isoformat(), "--json", dsn=db.dsn)
    assert res.code == 1
    out = json.loads(res.out)
    assert (out["failed"], len(out["failures"]), out["failures_truncated"]) == (1100, 1000, True)
    assert db.scalar("SELECT jsonb_array_length(failures) FROM batch_runs WHERE id = %s", out["run_id"]) == 100
    assert db.scalar("SELECT failed FROM batch_runs WHERE id = %s", out["run_id"]) == 1100
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0


def flat_snapshot(db: Db, pid: int, day: date, nav: int) -> None:
    """A complete snapshot of `day` written by hand: NAV `nav`, no P&L, no flow, no positions."""
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, opening_equity,"
               " daily_pnl, capital_flow, net_asset_value, cumulative_pnl, long_value, short_value,"
               " gross_exposure, net_exposure, num_positions, completed_at)"
               " VALUES (%s, %s, true, %s, 0, 0, %s, 0, 0, 0, 0, 0, 0, now())", pid, day, nav, nav)


def test_capital_flows_are_summed_per_portfolio_from_its_own_previous_date(db: Db) -> None:
    """The flows of one statement's portfolios are read in one index scan from the chunk's
    earliest previous date; each portfolio still sums only its own flows in (B, D]: a
    portfolio whose previous snapshot is older counts the flows since then, one with no
    earlier price date at all counts every flow up to D, and a flow after D counts for none."""
    from tests.test_claims import call

    add_prices(db.conn, {"AAA": {MON: D(100), TUE: D(101), WED: D(102), THU: D(103)}})
    old, recent, fresh = (add_portfolio(db.conn, name, 1000) for name in ("old", "recent", "fresh"))
    for pid, day in ((old, MON), (recent, WED)):
        flat_snapshot(db, pid, day, 1000)
    for pid in (old, recent, fresh):
        for day, amount in ((FRI, 1), (MON, 10), (TUE, 100), (WED, 1000), (THU, 10000), (FRI2, 100000)):
            add_flow(db.conn, pid, day, amount)
    # THU for all three in one statement, not gap-free (as a repair replays): B is MON, WED, WED.
    rows = call(db, "batch/insert_complete", 1, THU, [old, recent, fresh], False, [MON, WED, None])
    assert len(rows[0][0]) == 3, rows
    flows = dict(db.all("SELECT portfolio_id, capital_flow FROM portfolio_snapshots WHERE snapshot_date = %s",
                        THU))
    assert flows == {old: 11100, recent: 10000, fresh: 10000}
    # No price date before D: B is NULL, every flow up to D counts (FRI, MON), even beside a
    # portfolio whose B is a date (a legacy snapshot on a Sunday, not a price date).
    first, legacy = add_portfolio(db.conn, "first", 0), add_portfolio(db.conn, "legacy", 0)
    flat_snapshot(db, legacy, date(2026, 3, 1), 0)
    for pid in (first, legacy):
        add_flow(db.conn, pid, FRI, 5)
        add_flow(db.conn, pid, MON, 7)
        add_flow(db.conn, pid, TUE, 9)
    rows = call(db, "batch/insert_complete", 1, MON, [first, legacy], False, [None, date(2026, 3, 1)])
    assert len(rows[0][0]) == 2, rows
    assert dict(db.all("SELECT portfolio_id, capital_flow FROM portfolio_snapshots WHERE snapshot_date = %s",
                       MON)) == {first: 12, legacy: 7, old: 0}
