"""Prices you can trust: valuation marks, stale and late prices, corrections,
bad prices (issue 10). Every test asserts on the database's state."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from decimal import Decimal as D

import asyncpg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pnl import batch
from pnl.db import DbSettings, connect_pool
from tests.conftest import Db, run_cli
from tests.data import add_portfolio, add_positions, add_prices, random_book
from tests.reference import Position, marks_as_of, replay

FRI, MON, TUE, WED, THU = date(2026, 2, 27), date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)
LONG = date(2026, 2, 1)


def run(db: Db, *args: str) -> tuple[int, dict, str]:
    res = run_cli("batch", *args, "--json", dsn=db.dsn)
    return res.code, json.loads(res.out) if res.out.strip() else {}, res.err


def nav(db: Db, pid: int, day: date) -> D:
    return db.scalar("SELECT net_asset_value FROM portfolio_snapshots WHERE portfolio_id = %s"
                     " AND snapshot_date = %s AND is_complete", pid, day)  # type: ignore[return-value]


def marks(db: Db, day: date) -> dict[str, tuple[D, date]]:
    return {s: (c, p) for s, c, p in db.all("SELECT symbol, close_price, price_date FROM valuation_marks"
                                            " WHERE mark_date = %s", day)}


def counts(db: Db) -> tuple:
    return db.one("SELECT (SELECT count(*) FROM batch_runs), (SELECT count(*) FROM portfolio_snapshots),"
                  " (SELECT count(*) FROM valuation_marks)")


# ---------------------------------------------------------------- a late price
def late_book(db: Db) -> int:
    add_prices(db.conn, {"AAA": {FRI: D(95), MON: D(100), WED: D(101)},      # Tue's close arrives late
                         "BBB": {FRI: D(51), MON: D(48), TUE: D(47), WED: D(49)}})
    pid = add_portfolio(db.conn, "late", 10000)
    add_positions(db.conn, pid, [Position("AAA", D(10), LONG, D(90)), Position("BBB", D(-5), LONG, D(50))])
    return pid


def test_a_late_price_is_counted_on_the_next_date_and_the_nav_equals_on_time(db: Db) -> None:
    pid = late_book(db)
    assert run(db, "run", "--date", MON.isoformat())[0] == 0
    # Tue: AAA has no close yet (1 of 2 held symbols: more than the default 5%).
    code, out, err = run(db, "run", "--date", TUE.isoformat())
    assert code == 75 and "1 of 2 held symbol(s) have no close" in err and "AAA" in err
    assert "load them and re-run, or pass --max-stale" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(db, "run", "--date", TUE.isoformat(), "--max-stale", "1")
    assert code == 0, out
    assert out["stale_symbols"]["count"] == 1 and out["stale_symbols"]["names"] == ["AAA"]
    recorded = json.loads(db.scalar("SELECT stale_symbols::text FROM batch_runs WHERE id = %s", out["run_id"]))
    assert recorded["dates"] == [{"date": TUE.isoformat(), "count": 1, "names": ["AAA"]}]
    assert marks(db, TUE)["AAA"] == (D(100), MON)                  # carried forward, and says from when
    # Tue: AAA 10*(100-100) = 0, BBB -5*(47-48) = 5
    assert nav(db, pid, TUE) == D("10070.0000")                    # 10000 + Mon (50 + 15) + 5
    add_prices(db.conn, {"AAA": {TUE: D(102)}})                      # the late close arrives
    assert run(db, "run", "--date", WED.isoformat())[0] == 0
    # Wed starts from Tue's mark (100), not from the close loaded since (102):
    # AAA 10*(101-100) = 10, BBB -5*(49-47) = -10. On time it would have been
    # Tue +25, Wed -20: either way NAV = 10000 + 10*(101-95) - 5*(49-51) = 10070.
    assert nav(db, pid, WED) == D("10070.0000")
    on_time = replay(D(10000), [Position("AAA", D(10), LONG, D(90)), Position("BBB", D(-5), LONG, D(50))],
                     {"AAA": {FRI: D(95), MON: D(100), TUE: D(102), WED: D(101)},
                      "BBB": {FRI: D(51), MON: D(48), TUE: D(47), WED: D(49)}}, [], [MON, TUE, WED])
    assert on_time[-1].nav == nav(db, pid, WED)
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pid) == D("10070.0000")


def test_late_prices_over_a_book_match_the_on_time_reference(db: Db) -> None:
    days = [MON, TUE, WED]
    book = random_book(db.conn, 40, days, n_symbols=40, seed=11)
    late = ["S003", "S017"]                                          # Tue's closes of these arrive late
    db.execute("DELETE FROM market_prices WHERE price_date = %s AND symbol = ANY(%s)", TUE, late)
    assert run(db, "run", "--date", MON.isoformat())[0] == 0
    code, out, _ = run(db, "run", "--date", TUE.isoformat(), "--max-stale", "10%")
    assert code == 0 and sorted(out["stale_symbols"]["names"]) == late
    add_prices(db.conn, {s: {TUE: book.prices[s][TUE]} for s in late})
    assert run(db, "run", "--date", WED.isoformat())[0] == 0
    tue_marks = marks_as_of({s: {d: px for d, px in by.items() if not (d == TUE and s in late)}
                             for s, by in book.prices.items()}, TUE)
    for pid, balance in book.balances.items():
        flows = book.flows[pid]
        as_run = replay(balance, book.positions[pid], book.prices, flows, days, marks={TUE: tue_marks})
        on_time = replay(balance, book.positions[pid], book.prices, flows, days)
        assert [nav(db, pid, d) for d in days] == [s.nav for s in as_run], pid      # the model follows marks
        assert nav(db, pid, WED) == on_time[-1].nav, pid                            # nothing vanished


# ---------------------------------------------------------------- two runs of a date
def twin_book(db: Db) -> tuple[int, int]:
    add_prices(db.conn, {"AAA": {FRI: D(95), MON: D(100)}, "BBB": {FRI: D(51), MON: D(48)}})
    positions = [Position("AAA", D(10), LONG, D(90)), Position("BBB", D(-5), LONG, D(50))]
    p1, p2 = add_portfolio(db.conn, "first", 1000), add_portfolio(db.conn, "second", 1000)
    add_positions(db.conn, p1, positions)
    add_positions(db.conn, p2, positions)
    return p1, p2


def test_two_runs_of_a_date_value_every_portfolio_with_the_same_marks(db: Db) -> None:
    p1, p2 = twin_book(db)
    assert run(db, "run", "--date", MON.isoformat(), "--portfolio", str(p1))[0] == 0
    db.execute("UPDATE market_prices SET close_price = 200 WHERE symbol = 'AAA' AND price_date = %s", MON)
    code, out, _ = run(db, "run", "--date", MON.isoformat())          # 07:30, prices changed since 06:30
    assert code == 0 and out["processed"] == 1
    cols = "daily_pnl, net_asset_value, long_value, short_value, num_positions"
    row = "SELECT " + cols + " FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s"
    assert db.one(row, p1, MON) == db.one(row, p2, MON) == (D(65), D(1065), D(1000), D(-240), 2)
    assert marks(db, MON) == {"AAA": (D(100), MON), "BBB": (D(48), MON)}


def test_a_corrected_close_is_found_by_verify_and_fixed_by_repair(db: Db) -> None:
    p1, p2 = twin_book(db)
    add_prices(db.conn, {"AAA": {TUE: D(104)}, "BBB": {TUE: D(47)}})
    assert run(db, "backfill", "--from", MON.isoformat(), "--to", TUE.isoformat())[0] == 0
    assert run_cli("verify", dsn=db.dsn).code == 0
    db.execute("UPDATE market_prices SET close_price = 102 WHERE symbol = 'AAA' AND price_date = %s", MON)
    res = run_cli("verify", "--json", dsn=db.dsn)
    assert res.code == 1
    check = next(c for c in json.loads(res.out)["checks"] if c["check"] == "marks_differ_from_prices")
    assert check["rows"] == 1 and check["examples"][0] == {
        "mark_date": MON.isoformat(), "symbol": "AAA", "mark": "100", "mark_price_date": MON.isoformat(),
        "current_close": "102", "current_price_date": MON.isoformat(), "kind": "corrected", "portfolios_affected": 2}
    status = json.loads(run_cli("status", "--json", dsn=db.dsn).out)
    assert any(c["check"] == "marks_differ_from_prices" and c["rows"] == 1 for c in status["verify"])
    # --all-broken includes it (dry run: nothing changes).
    res = run_cli("repair", "--all-broken", "--dry-run", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    preview = json.loads(res.out)
    assert [(m["symbol"], m["old_close"], m["new_close"]) for m in preview["marks"]] == [("AAA", "100", "102")]
    assert marks(db, MON)["AAA"] == (D(100), MON) and nav(db, p1, MON) == D(1065)
    res = run_cli("repair", "--from", MON.isoformat(), "--yes", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["portfolios"] == 2 and out["changed"] == 2               # Mon's NAV changed, Tue's did not
    assert marks(db, MON)["AAA"] == (D(102), MON)
    old = db.one("SELECT old_row->>'close_price', new_close FROM valuation_mark_repair_audit"
                 " WHERE mark_date = %s AND symbol = 'AAA' AND rescue_run_id = %s", MON, out["rescue_run_id"])
    assert old == ("100", D(102))
    # Mon: AAA 10*(102-95) = 70, BBB 15 -> 1085; Tue: AAA 10*(104-102) = 20, BBB 5 -> 1110 (unchanged)
    for pid in (p1, p2):
        assert (nav(db, pid, MON), nav(db, pid, TUE)) == (D(1085), D(1110))
        assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pid) == D(1110)
    assert run_cli("verify", dsn=db.dsn).code == 0
    assert "nothing to repair" in run_cli("repair", "--from", MON.isoformat(), "--yes", dsn=db.dsn).out


# ---------------------------------------------------------------- --max-stale
def stale_book(db: Db, missing_on: date, missing: int) -> int:
    """Ten symbols held by one portfolio; `missing` of them have no close on `missing_on`."""
    prices = {f"S{i}": {d: D(10 + i) for d in (FRI, MON, TUE, WED)} for i in range(10)}
    for i in range(missing):
        del prices[f"S{i}"][missing_on]
    add_prices(db.conn, prices)
    pid = add_portfolio(db.conn, "ten", 1000)
    add_positions(db.conn, pid, [Position(f"S{i}", D(1), LONG, D(10)) for i in range(10)])
    return pid


def test_more_than_max_stale_missing_refuses_the_date_and_writes_nothing(db: Db) -> None:
    stale_book(db, MON, 3)
    res = run_cli("batch", "run", "--date", MON.isoformat(), dsn=db.dsn)
    assert res.code == 75 and len(res.err.strip().splitlines()) == 1
    assert "3 of 10 held symbol(s) have no close on that date (e.g. S0, S1, S2)" in res.err
    assert "more than --max-stale 5%" in res.err and "load them and re-run, or pass --max-stale" in res.err
    assert counts(db) == (0, 0, 0)                 # no batch_runs row, no claim, no mark
    res = run_cli("batch", "run", "--date", MON.isoformat(), "--max-stale", "2", "--json", dsn=db.dsn)
    assert res.code == 75 and json.loads(res.out)["exit_code"] == 75 and counts(db) == (0, 0, 0)
    code, out, err = run(db, "run", "--date", MON.isoformat(), "--max-stale", "0.3")
    assert code == 0 and out["processed"] == 1
    assert out["stale_symbols"] == {"count": 3, "names": ["S0", "S1", "S2"], "refused": None,
                                    "dates": [{"date": MON.isoformat(), "count": 3, "names": ["S0", "S1", "S2"]}]}
    status = json.loads(run_cli("status", "--json", "--no-verify", dsn=db.dsn).out)
    assert status["recent_runs"][0]["stale_symbols"]["count"] == 3
    assert "carried forward 3 mark(s)" in run_cli("status", "--no-verify", dsn=db.dsn).out
    # Its marks are fixed now: a second run of the date is never refused, and changes nothing.
    assert run(db, "run", "--date", MON.isoformat())[0] == 0


def test_a_catch_up_runs_up_to_the_first_stale_date_and_refuses_from_there(db: Db) -> None:
    pid = stale_book(db, TUE, 3)
    code, out, err = run(db, "backfill", "--from", MON.isoformat(), "--to", WED.isoformat())
    run_out = out["run"]
    assert code == 75 and run_out["status"] == "stale" and run_out["date"] == MON.isoformat()
    assert run_out["stale_symbols"]["refused"]["date"] == TUE.isoformat()
    assert "prices missing on 2026-03-03: 3 of 10" in run_out["stale_symbols"]["refused"]["message"]
    assert db.all("SELECT snapshot_date FROM portfolio_snapshots WHERE portfolio_id = %s", pid) == [(MON,)]
    assert db.all("SELECT DISTINCT mark_date FROM valuation_marks") == [(MON,)]
    row = db.one("SELECT status, stale_symbols->'refused'->>'date' FROM batch_runs WHERE id = %s", run_out["run_id"])
    assert row == ("stale", TUE.isoformat())
    # Again: Mon is done, Tue is the first date owed: refused whole, nothing written, one line.
    before = counts(db)
    res = run_cli("batch", "run", "--date", WED.isoformat(), dsn=db.dsn)
    assert res.code == 75 and "prices missing on 2026-03-03: 3 of 10" in res.err and "2026-03-03..2026-03-04" \
        in res.err and len(res.err.strip().splitlines()) == 1
    assert counts(db) == before
    # Prices loaded: the next run catches up Tue and Wed.
    add_prices(db.conn, {f"S{i}": {TUE: D(20)} for i in range(3)})
    code, out, _ = run(db, "run", "--date", WED.isoformat())
    assert code == 0 and [d["date"] for d in out["dates"] if d["processed"]] == [TUE.isoformat(), WED.isoformat()]


def test_max_stale_values(db: Db) -> None:
    for bad in ("-1", "1.5", "abc", "101%", "1e3", "\u0663", "9" * 400):
        res = run_cli("batch", "run", "--date", "latest", "--max-stale", bad, dsn=db.dsn)
        assert res.code == 2 and "--max-stale" in res.err and len(res.err.strip().splitlines()) == 1, (bad, res.err)
    assert str(batch.StaleLimit.parse("0.05")) == "5%" and batch.StaleLimit.parse("7").count == 7
    assert batch.StaleLimit.parse("5%").allows(1, 20) and not batch.StaleLimit.parse("5%").allows(2, 20)


# ---------------------------------------------------------------- bad prices, quantity 0
def test_a_close_at_or_below_zero_fails_its_portfolios_with_bad_price(db: Db) -> None:
    # A database from before 0009 (or one whose constraint was dropped) can hold one.
    db.execute("ALTER TABLE market_prices DROP CONSTRAINT ck_market_prices_close_positive")
    add_prices(db.conn, {"AAA": {FRI: D(95), MON: D(-5)}, "BBB": {FRI: D(51), MON: D(48)}})
    bad = add_portfolio(db.conn, "long AAA", 1000)
    add_positions(db.conn, bad, [Position("AAA", D(100), LONG, D(90))])
    good = add_portfolio(db.conn, "BBB", 1000)
    add_positions(db.conn, good, [Position("BBB", D(2), LONG, D(50))])
    code, out, _ = run(db, "run", "--date", MON.isoformat())
    assert code == 1 and (out["processed"], out["failed"]) == (1, 1)
    failure = out["failures"][0]
    assert failure["portfolio_id"] == bad and "bad price" in failure["reason"] and "AAA" in failure["reason"]
    assert nav(db, good, MON) == D(994)                                  # 1000 + 2*(48-51)
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s", bad) == 0
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", bad) == D(1000)
    assert "AAA" not in marks(db, MON)                                  # a bad close is never a mark


def test_quantity_zero_is_not_a_position(db: Db) -> None:
    add_prices(db.conn, {"AAA": {FRI: D(95), MON: D(100)}, "BBB": {FRI: D(51), MON: D(48)}})
    pid = add_portfolio(db.conn, "flat", 1000)
    add_positions(db.conn, pid, [Position("AAA", D(3), LONG, D(90)), Position("BBB", D(0), LONG, D(50))])
    assert run(db, "run", "--date", MON.isoformat())[0] == 0
    assert db.one("SELECT num_positions, daily_pnl FROM portfolio_snapshots WHERE portfolio_id = %s", pid) == (
        1, D(15))
    chain = replay(D(1000), [Position("AAA", D(3), LONG, D(90)), Position("BBB", D(0), LONG, D(50))],
                   {"AAA": {FRI: D(95), MON: D(100)}, "BBB": {FRI: D(51), MON: D(48)}}, [], [MON])
    assert chain[0].num_positions == 1


# ---------------------------------------------------------------- the migration's pre-check
def test_the_positive_close_precheck_refuses_bad_legacy_prices_and_changes_nothing(empty_db: Db) -> None:
    assert run_cli("migrate", "--to", "0008", dsn=empty_db.dsn).code == 0
    add_prices(empty_db.conn, {"AAA": {MON: D(0)}, "BBB": {TUE: D(-3)}, "CCC": {MON: D(7)}})
    res = run_cli("migrate", dsn=empty_db.dsn)
    assert res.code == 1
    assert "bad prices: 2 close(s) in market_prices are <= 0, e.g. AAA on 2026-03-02: 0; BBB on 2026-03-03: -3" \
        in res.err
    assert "Nothing was changed" in res.err and "pnl migrate" in res.err
    assert empty_db.scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'ck_market_prices_close_positive'") == 0
    assert empty_db.scalar("SELECT count(*) FROM _yoyo_migration WHERE migration_id LIKE '0009%%'") == 0
    assert empty_db.scalar("SELECT count(*) FROM market_prices") == 3
    empty_db.execute("UPDATE market_prices SET close_price = 1 WHERE close_price <= 0")
    assert run_cli("migrate", dsn=empty_db.dsn).code == 0
    assert empty_db.scalar("SELECT convalidated FROM pg_constraint WHERE conname = 'ck_market_prices_close_positive'")


# ---------------------------------------------------------------- the property
UNITS = D(7)
PDAYS = [date(2026, 7, 1), date(2026, 7, 2), date(2026, 7, 3), date(2026, 7, 6), date(2026, 7, 7)]
closes = st.decimals(min_value=D("0.01"), max_value=D(500), places=2)
events = st.lists(st.tuples(closes, st.sampled_from(["on_time", "late", "corrected", "never"]), closes),
                  min_size=len(PDAYS), max_size=len(PDAYS))


async def play_prices(dsn: str, pid: int, plan: list[tuple[D, str, D]]) -> None:
    async with connect_pool(DbSettings(dsn=dsn, statement_timeout_ms=60_000), max_size=2) as pool:
        async with pool.acquire() as conn:
            await conn.execute("TRUNCATE portfolio_snapshots, batch_runs, valuation_marks RESTART IDENTITY")
            await conn.execute("DELETE FROM market_prices WHERE price_date > $1", date(2026, 6, 30))
            await conn.execute("UPDATE portfolios SET equity_balance = 1000 WHERE id = $1", pid)
        opts = batch.BatchOptions(max_stale=batch.StaleLimit.parse("100%"))
        for day, (close, how, later) in zip(PDAYS, plan, strict=True):
            async with pool.acquire() as conn:
                await conn.execute("INSERT INTO market_prices VALUES ('FILL', $1, 1)", day)   # a price date
                if how in ("on_time", "corrected"):
                    await conn.execute("INSERT INTO market_prices VALUES ('AAA', $1, $2)", day, close)
            result = await batch.run(pool, day, opts)
            assert result.outcome == "done", result.failures
            async with pool.acquire() as conn:
                if how == "late":
                    await conn.execute("INSERT INTO market_prices VALUES ('AAA', $1, $2)", day, close)
                elif how == "corrected":
                    await conn.execute("UPDATE market_prices SET close_price = $2 WHERE symbol = 'AAA'"
                                       " AND price_date = $1", day, later)
        async with pool.acquire() as conn:
            pnl = [r["daily_pnl"] for r in await conn.fetch(
                "SELECT daily_pnl FROM portfolio_snapshots WHERE portfolio_id = $1 ORDER BY snapshot_date", pid)]
            mark = [r["close_price"] for r in await conn.fetch(
                "SELECT close_price FROM valuation_marks WHERE symbol = 'AAA' ORDER BY mark_date")]
    assert len(pnl) == len(mark) == len(PDAYS)
    for i in range(len(PDAYS)):
        for j in range(i + 1, len(PDAYS)):
            assert sum(pnl[i + 1:j + 1]) == UNITS * (mark[j] - mark[i]), (i, j)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=events)
@example(plan=[(D(100), "on_time", D(1)), (D(102), "late", D(1)), (D(101), "corrected", D(99)),
               (D(50), "never", D(1)), (D(60), "on_time", D(1))])
def test_sum_of_daily_pnl_is_units_times_the_move_of_the_marks(db: Db, plan: list[tuple[D, str, D]]) -> None:
    """Whatever arrived late, was corrected or never came, the P&L of a held
    position over any stretch of dates is units x (last mark - first mark)."""
    found = db.all("SELECT id FROM portfolios WHERE name = 'held'")
    pid = found[0][0] if found else None
    if pid is None:
        add_prices(db.conn, {"AAA": {date(2026, 6, 30): D(100)}, "FILL": {date(2026, 6, 30): D(1)}})
        pid = add_portfolio(db.conn, "held", 1000)
        add_positions(db.conn, pid, [Position("AAA", UNITS, date(2026, 6, 1), D(90))])
    asyncio.run(play_prices(db.dsn, pid, plan))  # type: ignore[arg-type]


async def _finalize_after_a_late_position(dsn: str, pid: int) -> tuple[list[str], list[str], list[int]]:
    from datetime import timedelta

    from pnl.queries import sql
    conn = await asyncpg.connect(dsn)
    try:
        run_id = (await conn.fetchrow(sql("runs/start_run"), MON, "test", 1, None, None))["id"]
        await batch.fix_marks(conn, MON, run_id)                 # the run fixes Mon's marks ...
        await batch.claim_owed(conn, run_id, MON, [pid], timedelta(minutes=5), [MON])
        # ... then a position in a symbol nobody held is booked before the chunk finalizes
        await conn.execute("INSERT INTO positions (portfolio_id, symbol, quantity, entry_date, entry_price)"
                           " VALUES ($1, 'NEW', 1, $2, 10)", pid, LONG)
        fin = await batch.finalize_chunk(conn, run_id, MON, [pid])
        return [r.kind for r in fin.refused], [r.detail for r in fin.refused], fin.done
    finally:
        await conn.close()


def test_a_symbol_without_a_mark_is_refused_not_valued_with_a_fresh_close(db: Db) -> None:
    add_prices(db.conn, {"AAA": {FRI: D(95), MON: D(100)}, "NEW": {FRI: D(10), MON: D(11)}})
    pid = add_portfolio(db.conn, "p", 1000)
    add_positions(db.conn, pid, [Position("AAA", D(1), LONG, D(90))])
    kinds, details, done = asyncio.run(_finalize_after_a_late_position(db.dsn, pid))
    assert (kinds, details, done) == (["missing_mark"], ["NEW"], [])
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0      # claim released
    # The next run fixes the missing mark and computes the date.
    code, out, _ = run(db, "run", "--date", MON.isoformat())
    assert code == 0 and out["processed"] == 1 and marks(db, MON)["NEW"] == (D(11), MON)
    assert nav(db, pid, MON) == D(1000) + 5 + 1
