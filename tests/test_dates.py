"""Dates you can trust: the price calendar, the gap-free chain, honest exit codes."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal as D

from tests.conftest import Db, run_cli
from tests.data import add_flow, add_portfolio, add_positions, add_prices, random_book
from tests.procs import finish, slow_finalize, start_batch, wait_for
from tests.reference import Position, replay

SNAPSHOT = ("snapshot_date, opening_equity, daily_pnl, capital_flow, net_asset_value, daily_return, cumulative_pnl,"
            " long_value, short_value, gross_exposure, net_exposure, num_positions, is_complete")


def nothing_written(db: Db) -> bool:
    return db.scalar("SELECT count(*) FROM batch_runs") == 0 and \
        db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0


def db_today(db: Db) -> date:
    return db.scalar("SELECT current_date")  # type: ignore[return-value]


def one_error_line(res) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    return lines[0]


def test_a_date_without_prices_and_a_future_date_are_refused_with_nothing_written(db: Db) -> None:
    today = db_today(db)
    # Price dates: today-4 and today-1; today-3/-2 are a "weekend"; someone loaded a price for tomorrow.
    add_prices(db.conn, {"AAA": {today - timedelta(days=4): D(10), today - timedelta(days=1): D(11),
                                 today + timedelta(days=1): D(12)}})
    pid = add_portfolio(db.conn, "p", 100)
    add_positions(db.conn, pid, [Position("AAA", D(1), today - timedelta(days=30), D(9))])

    weekend = today - timedelta(days=2)
    res = run_cli("batch", "run", "--date", weekend.isoformat(), dsn=db.dsn)
    assert res.code == 2
    line = one_error_line(res)
    assert f"{weekend} is not a price date" in line
    assert f"{today - timedelta(days=4)} (before)" in line and f"{today - timedelta(days=1)} (after)" in line
    assert nothing_written(db)

    for future in ("9999-12-31", (today + timedelta(days=1)).isoformat()):
        res = run_cli("batch", "run", "--date", future, dsn=db.dsn)
        assert res.code == 2
        line = one_error_line(res)
        assert f"is after today ({today}, the database's clock)" in line
        assert f"the latest price date is {today - timedelta(days=1)}" in line
        assert nothing_written(db)

    # today has no price: refused the same way (resolved on the database's clock).
    res = run_cli("batch", "run", "--date", "today", dsn=db.dsn)
    assert res.code == 2 and f"today ({today}) is not a price date" in one_error_line(res)
    res = run_cli("batch", "backfill", "--from", weekend.isoformat(), "--to", "9999-12-31", dsn=db.dsn)
    assert res.code == 2 and "after today" in one_error_line(res)
    assert nothing_written(db)


def test_date_latest_is_the_latest_price_date_not_after_today_and_a_holiday_is_a_no_op(db: Db) -> None:
    today = db_today(db)
    last = today - timedelta(days=1)
    add_prices(db.conn, {"AAA": {today - timedelta(days=4): D(10), last: D(11),
                                 today + timedelta(days=3): D(99)}})      # a future price never counts
    pid = add_portfolio(db.conn, "p", 100)
    add_positions(db.conn, pid, [Position("AAA", D(2), today - timedelta(days=30), D(9))])
    res = run_cli("batch", "run", "--date", "latest", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert (out["date"], out["processed"]) == (last.isoformat(), 1)
    assert db.all("SELECT snapshot_date, net_asset_value FROM portfolio_snapshots") == [(last, D("102.0000"))]
    # A scheduler calling again on a holiday (no new price date): nothing to do, exit 0.
    before = db.all("SELECT * FROM portfolio_snapshots ORDER BY id")
    res = run_cli("batch", "run", "--date", "latest", "--json", dsn=db.dsn)
    assert res.code == 0 and json.loads(res.out)["already_done"] == 1
    res = run_cli("batch", "run", "--date", "yesterday", "--json", dsn=db.dsn)
    assert res.code == 0 and json.loads(res.out)["date"] == last.isoformat()
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == before


def test_latest_on_an_empty_calendar_is_refused(db: Db) -> None:
    add_portfolio(db.conn, "p", 100)
    res = run_cli("batch", "run", "--date", "latest", dsn=db.dsn)
    assert res.code == 2 and "no price dates on or before today" in one_error_line(res)
    assert nothing_written(db)


# ---------------------------------------------------------------- the gap-free chain
DAYS = [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6), date(2026, 3, 9)]
PRICES = {
    "AAA": {date(2026, 2, 27): D(95), DAYS[0]: D(100), DAYS[1]: D(102), DAYS[2]: D(101), DAYS[3]: D(104),
            DAYS[4]: D(105), DAYS[5]: D("103.5")},
    "BBB": {date(2026, 2, 27): D(51), DAYS[0]: D(48), DAYS[1]: D(47), DAYS[4]: D(49), DAYS[5]: D(50)},
    "OPT": {date(2026, 2, 27): D(3), DAYS[0]: D("3.5"), DAYS[2]: D("3.25"), DAYS[3]: D("4.1"), DAYS[5]: D(4)},
}
POSITIONS = [
    Position("AAA", D(10), date(2026, 2, 1), D(90)),
    Position("BBB", D(-5), date(2026, 2, 1), D(50)),
    Position("OPT", D(2), date(2026, 2, 1), D(3), multiplier=D(100)),
    Position("AAA", D(4), DAYS[2], D(100), exit_date=DAYS[3], exit_price=D(106)),
]
FLOWS = [(DAYS[2], D(1000)), (DAYS[4], D(-200))]
# BBB and OPT have no close on some days: this book carries them forward, which
# --max-stale (default 5%) refuses for a book of three symbols.
CARRY = ("--max-stale", "100%")


def twin(db: Db, name: str) -> int:
    pid = add_portfolio(db.conn, name, D(10000))
    add_positions(db.conn, pid, POSITIONS)
    for day, amount in FLOWS:
        add_flow(db.conn, pid, day, amount)
    return pid


def test_catch_up_over_a_five_day_gap_equals_running_the_days_one_by_one(db: Db) -> None:
    add_prices(db.conn, PRICES)
    one_by_one, caught_up = twin(db, "one by one"), twin(db, "caught up")
    assert run_cli("batch", "run", "--date", DAYS[0].isoformat(), *CARRY, dsn=db.dsn).code == 0     # both chains start
    for day in DAYS[1:]:
        res = run_cli("batch", "run", "--date", day.isoformat(), "--portfolio", str(one_by_one), *CARRY, dsn=db.dsn)
        assert res.code == 0, res.err
    # Five price dates missed, then one run for the last: it computes each of them, in order.
    res = run_cli("batch", "run", "--date", DAYS[-1].isoformat(), "--json", *CARRY, dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert [(d["date"], d["processed"], d["already_done"]) for d in out["dates"]] == [
        (day.isoformat(), 1, 1) for day in DAYS[1:]]
    assert (out["processed"], out["already_done"], out["failed"]) == (5, 5, 0)

    rows = {pid: db.all(f"SELECT {SNAPSHOT} FROM portfolio_snapshots WHERE portfolio_id = %s ORDER BY 1", pid)
            for pid in (one_by_one, caught_up)}
    assert [r[0] for r in rows[caught_up]] == DAYS
    assert rows[caught_up] == rows[one_by_one]
    chain = replay(D(10000), POSITIONS, PRICES, FLOWS, DAYS)
    assert [r[4] for r in rows[caught_up]] == [s.nav for s in chain]
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", caught_up) == chain[-1].nav


def test_a_failed_day_stops_only_that_portfolio_and_heals_on_the_next_run(db: Db) -> None:
    add_prices(db.conn, {s: {d: px for d, px in by.items() if d <= DAYS[2]} for s, by in PRICES.items()})
    twin(db, "good")
    bad = twin(db, "needs ZZZ")
    add_positions(db.conn, bad, [Position("ZZZ", D(1), DAYS[1], D(7))])       # no close for ZZZ yet
    res = run_cli("batch", "backfill", "--from", DAYS[0].isoformat(), "--to", DAYS[2].isoformat(), "--json",
                  *CARRY, dsn=db.dsn)
    assert res.code == 1
    out = json.loads(res.out)["run"]
    assert [(d["processed"], d["failed"]) for d in out["dates"]] == [(2, 0), (1, 1), (1, 1)]
    assert [(f["portfolio_id"], f["date"]) for f in out["failures"]] == [(bad, DAYS[1].isoformat())]
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s", bad) == 1
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") == 0
    # The price arrives; the daily run for the last date fills the failed days first, in order.
    add_prices(db.conn, {"ZZZ": {DAYS[1]: D(8), DAYS[2]: D(9)}})
    res = run_cli("batch", "run", "--date", DAYS[2].isoformat(), "--json", *CARRY, dsn=db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["processed"] == 2
    assert db.all("SELECT snapshot_date FROM portfolio_snapshots WHERE portfolio_id = %s ORDER BY 1", bad) == [
        (d,) for d in DAYS[:3]]


def chain_days(db: Db, pid: int) -> list[date]:
    return [d for (d,) in db.all("SELECT snapshot_date FROM portfolio_snapshots WHERE portfolio_id = %s"
                                 " AND is_complete ORDER BY 1", pid)]


def assert_gap_free_and_exact(db: Db, book, calendar: list[date]) -> None:  # type: ignore[no-untyped-def]
    """Snapshots per portfolio = the price dates of its chain, and every NAV (and
    the equity) equals an independent replay of that chain."""
    navs = {(p, d): nav for p, d, nav in db.all(
        "SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots WHERE is_complete")}
    equity = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    for pid, balance in book.balances.items():
        days = chain_days(db, pid)
        assert days, pid
        assert days == calendar[calendar.index(days[0]):calendar.index(days[-1]) + 1], (pid, days)
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], days)
        assert [navs[(pid, s.day)] for s in chain] == [s.nav for s in chain], pid
        assert equity[pid] == chain[-1].nav, pid


def test_a_backfill_and_the_daily_run_together_leave_no_hole(db: Db) -> None:
    calendar = [date(2026, 6, 1) + timedelta(days=i) for i in range(12)]
    book = random_book(db.conn, 60, calendar, seed=19)
    # Every portfolio has history up to the day before the backfill (the usual state).
    assert run_cli("batch", "run", "--date", calendar[0].isoformat(), dsn=db.dsn).code == 0
    slow_finalize(db.dsn, 0.05)        # each finalize statement takes a while: the two runs overlap for real
    backfill = start_batch(db.dsn, "--from", calendar[1].isoformat(), "--to", calendar[-1].isoformat(),
                           "--chunk-size", "15", "--workers", "1", cmd=("batch", "backfill"))
    wait_for(lambda: db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") > 0,
             what="the backfill's first claims")
    daily = start_batch(db.dsn, "--date", calendar[-1].isoformat(), "--chunk-size", "10", "--workers", "2")
    code_b, out_b, err_b = finish(backfill)
    code_d, out_d, err_d = finish(daily)
    assert code_b in (0, 75) and code_d in (0, 75), err_b + err_d
    assert out_b["run"]["failed"] == 0 and out_d["failed"] == 0
    assert out_b["run"]["processed"] > 0 and out_d["processed"] > 0, "the runs did not overlap"
    # Together: zero holes, and every slot done exactly once.
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") == 0
    assert out_b["run"]["processed"] + out_d["processed"] == 60 * 11
    assert_gap_free_and_exact(db, book, calendar)
    assert all(chain_days(db, pid)[-1] == calendar[-1] for pid in book.balances)


def test_a_backfill_over_done_dates_is_one_cheap_run(db: Db) -> None:
    calendar = [date(2026, 6, 1) + timedelta(days=i) for i in range(8)]
    random_book(db.conn, 10, calendar, seed=3)
    first = run_cli("batch", "backfill", "--from", calendar[0].isoformat(), "--to", calendar[-1].isoformat(),
                    "--json", dsn=db.dsn)
    assert first.code == 0, first.err
    assert json.loads(first.out)["run"]["processed"] == 80
    runs, rows = db.scalar("SELECT count(*) FROM batch_runs"), db.all("SELECT * FROM portfolio_snapshots ORDER BY id")
    res = run_cli("batch", "backfill", "--from", calendar[0].isoformat(), "--to", calendar[-1].isoformat(),
                  dsn=db.dsn)
    assert res.code == 0, res.err
    assert db.scalar("SELECT count(*) FROM batch_runs") == runs + 1
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == rows
    assert res.out.count("already done 10") == 8


def test_dates_before_a_chain_are_before_chain_and_do_not_stop_the_range(db: Db) -> None:
    add_prices(db.conn, PRICES)
    old, new = twin(db, "chain from the first day"), twin(db, "chain from the third day")
    assert run_cli("batch", "run", "--date", DAYS[0].isoformat(), "--portfolio", str(old), *CARRY, dsn=db.dsn).code == 0
    assert run_cli("batch", "run", "--date", DAYS[2].isoformat(), "--portfolio", str(new), *CARRY, dsn=db.dsn).code == 0
    res = run_cli("batch", "backfill", "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(), "--json",
                  *CARRY, dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)["run"]
    by_date = {d["date"]: d for d in out["dates"]}
    assert (by_date[DAYS[0].isoformat()]["before_chain"], by_date[DAYS[1].isoformat()]["before_chain"]) == (1, 1)
    assert all(d["failed"] == 0 for d in out["dates"])
    assert chain_days(db, old) == DAYS and chain_days(db, new) == DAYS[2:]


# ---------------------------------------------------------------- exit codes that tell the truth
def test_kill_9_then_an_immediate_rerun_exits_75_and_wait_finishes_exactly_once(db: Db) -> None:
    day = date(2026, 6, 1)
    book = random_book(db.conn, 40, [day], seed=23)
    slow_finalize(db.dsn, 3)               # the victim's finalize sleeps in the database
    # Its lease outlasts the immediate re-run below (one slow finalize of its own).
    victim = start_batch(db.dsn, "--date", day.isoformat(), "--chunk-size", "20", "--workers", "1", "--lease", "8s")
    wait_for(lambda: db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") == 20,
             what="the victim's first chunk")
    victim.kill()
    victim.wait()
    dead = db.scalar("SELECT max(id) FROM batch_runs")

    code, out, err = finish(start_batch(db.dsn, "--date", day.isoformat(), "--chunk-size", "20"))
    assert code == 75, err
    assert (out["processed"], out["held"], out["failed"], out["status"]) == (20, 20, 0, "held")
    assert [h["run_id"] for h in out["holders"]] == [dead] and out["holders"][0]["lease_expires_at"]
    assert db.scalar("SELECT status FROM batch_runs WHERE id = %s", out["run_id"]) == "held"

    code, out, err = finish(start_batch(db.dsn, "--date", day.isoformat(), "--wait"))
    assert code == 0, err
    assert (out["processed"], out["reclaimed"], out["held"], out["already_done"]) == (20, 20, 0, 20)
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") == 0
    rows = db.all("SELECT portfolio_id, count(*), bool_and(is_complete) FROM portfolio_snapshots GROUP BY 1")
    assert len(rows) == 40 and all(n == 1 and ok for _, n, ok in rows)
    equity = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    for pid, balance in book.balances.items():
        assert equity[pid] == replay(balance, book.positions[pid], book.prices, book.flows[pid], [day])[-1].nav
    # The dead run's row does not stay 'running' forever.
    assert db.scalar("SELECT status FROM batch_runs WHERE id = %s", dead) == "abandoned"


def test_runs_whose_process_died_are_marked_abandoned_by_the_next_run(db: Db) -> None:
    day = date(2026, 6, 1)
    add_prices(db.conn, {"AAA": {day: D(1)}})
    pids = [add_portfolio(db.conn, f"p{i}", 1) for i in range(3)]

    def fake_run(heartbeat_ago: str, lease: str | None) -> int:
        return db.scalar("INSERT INTO batch_runs (run_date, host, pid, heartbeat_at, lease) VALUES"
                         " ('2026-06-01', 'h', 1, now() - %s::interval, %s::interval) RETURNING id",
                         heartbeat_ago, lease)  # type: ignore[return-value]

    dead = fake_run("10 minutes", "5 minutes")          # silent longer than its lease, no live claims
    legacy_dead = fake_run("1 hour", None)              # a row from before 0007: 15 minutes assumed
    alive = fake_run("10 seconds", "5 minutes")         # heartbeat within its lease
    holding = fake_run("10 minutes", "5 minutes")       # silent, but its claim is still live: not dead yet
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id,"
               " claimed_at, lease_expires_at) VALUES (%s, '2026-05-29', false, %s, now(), now() + interval '1h')",
               pids[0], holding)
    res = run_cli("batch", "run", "--date", day.isoformat(), "--portfolio", str(pids[1]), "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert sorted(json.loads(res.out)["abandoned_runs"]) == sorted([dead, legacy_dead])
    assert dict(db.all("SELECT id, status FROM batch_runs WHERE id = ANY(%s)", [dead, legacy_dead, alive, holding])) \
        == {dead: "abandoned", legacy_dead: "abandoned", alive: "running", holding: "running"}
    text = run_cli("status", "--no-verify", dsn=db.dsn)
    assert f"#{dead}" in text.out and "abandoned" in text.out


def test_status_shows_how_far_each_chain_is_behind(db: Db) -> None:
    calendar = [date(2026, 6, 1) + timedelta(days=i) for i in range(5)]
    random_book(db.conn, 4, calendar, seed=5)
    a, b, c, d = [p for (p,) in db.all("SELECT id FROM portfolios ORDER BY id")]
    for pid, last in ((a, calendar[4]), (b, calendar[2]), (c, calendar[1])):
        res = run_cli("batch", "backfill", "--from", calendar[0].isoformat(), "--to", last.isoformat(),
                      "--portfolio", str(pid), dsn=db.dsn)
        assert res.code == 0, res.err
    res = run_cli("status", "--no-verify", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    chain = json.loads(res.out)["chain"]
    assert chain == {"latest_price_date": calendar[4].isoformat(), "portfolios": 4, "up_to_date": 1,
                     "never_run": 1, "behind": 2,
                     "lag": [{"dates_behind": 2, "portfolios": 1}, {"dates_behind": 3, "portfolios": 1}]}
    text = run_cli("status", "--no-verify", dsn=db.dsn).out
    assert "1 of 4 portfolio(s) up to date, 2 behind (1 behind by 2 date(s), 1 behind by 3 date(s))" in text
    assert "1 never run" in text
    # The next run catches them up (and starts the one that never ran).
    assert run_cli("batch", "run", "--date", "latest", dsn=db.dsn).code == 0
    chain = json.loads(run_cli("status", "--no-verify", "--json", dsn=db.dsn).out)["chain"]
    assert (chain["up_to_date"], chain["behind"], chain["never_run"]) == (4, 0, 0)
