"""Holes in a chain: a price date between two complete snapshots of a
portfolio with none of its own. Runs only extend chains, so a hole is never
filled by running again; it must be seen. How holes happen: a date's closes
arrive after the later dates were computed across it (a late feed), one stray
close makes a weekend a price date, a snapshot in the middle is deleted by
hand (and `pnl repair` replays across the gap). Asserted on the database's
rows: `pnl verify` names each hole (sql/verify/chain_skips_price_date.sql), a
run that covers a hole's date reports it failed with the way out instead of
"already done", and the way out (undo from the hole, run again) leaves the
same rows as a book that never had the hole."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from tests.conftest import Db, run_cli
from tests.data import random_book

CALENDAR = [date(2026, 6, 1) + timedelta(days=i) for i in range(5)]      # Mon..Fri
ROWS = ("SELECT portfolio_id, snapshot_date, opening_equity, daily_pnl, net_asset_value, capital_flow"
        "  FROM portfolio_snapshots ORDER BY 1, 2")


def cli(db: Db, *args: str, code: int = 0) -> dict:
    res = run_cli(*args, "--json", dsn=db.dsn)
    assert res.code == code, (res.out, res.err)
    assert "Traceback" not in res.err, res.err
    return json.loads(res.out)


def holes(db: Db, *args: str) -> list[dict]:
    out = run_cli("verify", *args, "--json", dsn=db.dsn)
    assert out.code in (0, 1), out.err
    checks = {c["check"]: c for c in json.loads(out.out)["checks"]}
    check = checks["chain_skips_price_date"]
    assert check["error"] is None, check
    assert (out.code == 0) == all(c["healthy"] for c in checks.values())
    return [check] if check["rows"] else []


def late_feed(db: Db, n: int, seed: int) -> tuple[list[int], date]:
    """A book whose middle date's closes arrive after the dates around it ran."""
    random_book(db.conn, n, CALENDAR, seed=seed)
    late = CALENDAR[2]
    db.execute("CREATE TABLE late_closes AS SELECT * FROM market_prices WHERE price_date = %s", late)
    db.execute("DELETE FROM market_prices WHERE price_date = %s", late)
    out = cli(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[-1].isoformat())
    assert out["run"]["processed"] == n * 4, out
    assert not holes(db)                                 # no hole yet: the date had no closes
    db.execute("INSERT INTO market_prices SELECT * FROM late_closes")
    return [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")], late


def test_a_price_date_whose_closes_arrive_late_is_a_hole_verify_names_and_a_run_does_not_call_done(
        db: Db) -> None:
    ids, late = late_feed(db, 12, seed=71)
    [check] = holes(db)
    assert check["rows"] == 12
    first = check["examples"][0]
    assert (first["portfolio_id"], first["missing_date"], first["missing_dates"], first["previous_date"],
            first["snapshot_date"]) == (ids[0], late.isoformat(), [late.isoformat()],
                                        CALENDAR[1].isoformat(), CALENDAR[3].isoformat())
    # bounded: a snapshot on or after the bound, against its previous one however old
    assert holes(db, "--since", CALENDAR[3].isoformat())[0]["rows"] == 12
    assert holes(db, "--since", CALENDAR[4].isoformat()) == []
    # status shows it too (it runs the checks)
    status = cli(db, "status")
    assert [c["rows"] for c in status["verify"] if c["check"] == "chain_skips_price_date"] == [12], status
    # A run that covers the date does not call it done: failed, with the way out, exit 1.
    out = cli(db, "batch", "backfill", "--from", late.isoformat(), "--to", late.isoformat(), code=1)["run"]
    assert out["status"] == "failed", out
    assert out["dates"] == [{"date": late.isoformat(), "processed": 0, "already_done": 0, "before_chain": 0,
                             "held": 0, "failed": 12, "lost": 0}]
    reason = out["failures"][0]["reason"]
    assert "batch undo --from " + late.isoformat() in reason, reason
    # a run of a later date still covers only that date (done), so it stays 0
    assert cli(db, "batch", "run", "--date", CALENDAR[-1].isoformat())["already_done"] == 12
    # The way out: undo from the hole, run again; the rows are a clean book's.
    cli(db, "batch", "undo", "--from", late.isoformat(), "--yes")
    cli(db, "batch", "run", "--date", CALENDAR[-1].isoformat())
    assert not holes(db)
    rows = db.all(ROWS)
    assert len(rows) == 12 * 5
    # a clean book from the same seed, every date's closes on time
    clean = _clean_rows(db, 12, seed=71)
    assert rows == clean


def _clean_rows(db: Db, n: int, seed: int) -> list[tuple]:
    db.execute("TRUNCATE portfolio_snapshots, portfolios, positions, market_prices, capital_flows,"
               " valuation_marks CASCADE")
    db.execute("DROP TABLE late_closes")
    random_book(db.conn, n, CALENDAR, seed=seed)
    cli(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[-1].isoformat())
    shift = db.scalar("SELECT min(id) FROM portfolios") - 1
    return [(r[0] - shift, *r[1:]) for r in db.all(ROWS)]


def test_a_stray_weekend_close_and_a_hand_deleted_middle_snapshot_are_holes(db: Db) -> None:
    random_book(db.conn, 6, CALENDAR, seed=72)
    friday = CALENDAR[-1]
    cli(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", friday.isoformat())
    monday = friday + timedelta(days=3)
    db.execute("INSERT INTO market_prices (symbol, price_date, close_price)"
               " SELECT symbol, %s, close_price FROM market_prices WHERE price_date = %s", monday, friday)
    cli(db, "batch", "run", "--date", monday.isoformat())
    assert not holes(db)
    saturday = friday + timedelta(days=1)
    db.execute("INSERT INTO market_prices (symbol, price_date, close_price)"
               " SELECT symbol, %s, close_price FROM market_prices WHERE price_date = %s LIMIT 1", saturday, friday)
    [check] = holes(db)
    assert check["rows"] == 6
    assert check["examples"][0]["missing_dates"] == [saturday.isoformat()]
    db.execute("DELETE FROM market_prices WHERE price_date = %s", saturday)
    assert not holes(db)
    # a snapshot in the middle deleted by hand: verify's chain check sees the NAV jump, and after
    # a repair replays across the gap (the chain check is then healthy) the hole is still named
    pid = db.scalar("SELECT min(id) FROM portfolios")
    db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s", pid, CALENDAR[2])
    [check] = holes(db)
    assert (check["rows"], check["examples"][0]["portfolio_id"]) == (1, pid)
    run_cli("repair", "--all-broken", "--yes", dsn=db.dsn)
    [check] = holes(db)
    assert check["examples"][0]["missing_date"] == CALENDAR[2].isoformat()


def test_the_hole_check_runs_only_for_dates_asked_for_before_the_latest_price_date(
        db: Db, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The daily run must not pay for it, also while one portfolio catches up: only a
    backfill's dates or an older --date are looked at (verify names holes anywhere)."""
    from pnl import batch
    from tests.conftest import run_in_process

    random_book(db.conn, 6, CALENDAR, seed=73)
    cli(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[-1].isoformat())
    pid = db.scalar("SELECT min(id) FROM portfolios")
    cli(db, "batch", "undo", "--from", CALENDAR[2].isoformat(), "--portfolio", str(pid), "--yes")
    asked: list[list[date]] = []
    real = batch.holes_may_hide_on

    def recorded(result: batch.RunResult) -> list[date]:
        asked.append(real(result))
        return asked[-1]

    monkeypatch.setattr(batch, "holes_may_hide_on", recorded)

    def run_here(*args: str) -> dict:
        res = run_in_process(capsys, monkeypatch, (*args, "--json"), {"DATABASE_URL": db.dsn})
        assert res.code == 0, res.err
        return json.loads(res.out)

    # the daily run of the latest date, one portfolio catching up 3 dates: only the date asked
    # for (the latest price date: the statement's gate reads no snapshot), not the catch-up's
    out = run_here("batch", "run", "--date", CALENDAR[-1].isoformat())
    assert (out["processed"], out["already_done"]) == (3, 5 + 5 * 2), out
    assert asked == [[CALENDAR[-1]]]
    # a backfill of dates all done: each date asked for
    out = run_here("batch", "backfill", "--from", CALENDAR[1].isoformat(), "--to", CALENDAR[3].isoformat())
    assert out["run"]["status"] == "succeeded"
    assert asked[1:] == [CALENDAR[1:4]]


def test_restoring_an_undo_of_a_hole_never_restores_across_a_date_run_since(db: Db) -> None:
    """The undo from a hole removes the dates after it (the hole itself has no row);
    the re-run fills the hole too. The refilled check looked only at the removed
    dates, so the advised undo (from the first removed date) left the re-run's hole
    date in place and the restore put the old rows, computed across the hole, on top
    of it: a broken chain. The check now starts at the undo's own from date."""
    ids, late = late_feed(db, 6, seed=74)
    before = db.all(ROWS)
    first = cli(db, "batch", "undo", "--from", late.isoformat(), "--yes")
    assert first["removed"] == 6 * 2                       # the two dates after the hole
    cli(db, "batch", "run", "--date", CALENDAR[-1].isoformat())
    res = run_cli("batch", "undo", "--restore", str(first["run_id"]), "--yes", dsn=db.dsn)
    assert res.code == 1 and f"--from {late.isoformat()}" in res.err, res.err
    cli(db, "batch", "undo", "--from", late.isoformat(), "--yes")
    res = run_cli("batch", "undo", "--restore", str(first["run_id"]), "--yes", dsn=db.dsn)
    assert res.code == 0, res.err
    assert db.all(ROWS) == before                          # exactly the book before the first undo
    [check] = holes(db)                                    # with its hole, named as before
    assert check["rows"] == 6
