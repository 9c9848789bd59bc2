"""Races between the one-write path's read-only plan and its writes (found in
review): another run finishing the dates in between, a claim failing after
the plan, an undo of the dates the run has just written. Each is staged in
one process: the plan (or a write) is wrapped to run the other command, a
real CLI process on the real database, at exactly that point."""

from __future__ import annotations

import asyncio
from datetime import date

import pnl.batch as batch
from pnl.db import DbSettings, connect_pool
from tests.conftest import Db, run_cli
from tests.data import random_book
from tests.test_one_write import assert_chains

DAYS = [date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3)]


def run_range(db: Db, last: date, start: date) -> batch.RunResult:
    """One run in this process (so a test can wrap its steps), on its own pool."""
    async def go() -> batch.RunResult:
        async with connect_pool(DbSettings(db.dsn), max_size=3) as pool:
            return await batch.run_range(pool, last, start)

    return asyncio.run(go())


def test_slot_completed_by_another_run_after_the_plan_is_already_done_not_before_chain(db: Db, monkeypatch) -> None:  # noqa: ANN001
    random_book(db.conn, 5, DAYS)
    assert run_cli("batch", "run", "--date", DAYS[0].isoformat(), dsn=db.dsn).code == 0   # chains start on day 1

    real = batch.claim_owed
    raced = []

    async def plan_then_race(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        plan = await real(*args, **kwargs)
        if kwargs.get("claim") is False and not raced:
            # another run catches the book up to day 3 between our plan and our first write
            raced.append(run_cli("batch", "run", "--date", DAYS[2].isoformat(), dsn=db.dsn).code)
        return plan

    monkeypatch.setattr(batch, "claim_owed", plan_then_race)

    result = run_range(db, DAYS[2], DAYS[2])
    assert raced == [0]
    by_day = {r.day: r for r in result.dates()}
    assert (by_day[DAYS[2]].already_done, by_day[DAYS[2]].processed) == (5, 0)
    # day 2 was computed (by the other run): already done, not "before the chain"
    assert (by_day[DAYS[1]].before_chain, by_day[DAYS[1]].already_done) == (0, 5), by_day[DAYS[1]]


# The one-write statement is refused (as tests/procs.py TWO_STEP_ONLY_SQL does), and the two-step claim
# statement fails too (not a connection fault: no retry). The first claim_owed_dates statement of the
# run is the read-only plan (its INSERT CTE still fires statement triggers): let that one through.
FAIL_AFTER_PLAN_SQL = """
CREATE SEQUENCE IF NOT EXISTS pnl_review_claims;
CREATE OR REPLACE FUNCTION pnl_review_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_query() LIKE '-- insert_complete:%' THEN
        RAISE EXCEPTION 'review: one-write refused';
    END IF;
    IF current_query() LIKE '-- claim_owed_dates:%' AND nextval('pnl_review_claims') > 1 THEN
        RAISE EXCEPTION 'review: claim refused';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER pnl_review_refuse BEFORE INSERT ON portfolio_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION pnl_review_refuse();
"""


def test_a_chunk_that_fails_claiming_after_the_plan_is_not_already_done_on_earlier_dates(db: Db) -> None:
    import json

    random_book(db.conn, 5, DAYS)
    assert run_cli("batch", "run", "--date", DAYS[0].isoformat(), dsn=db.dsn).code == 0
    db.execute(FAIL_AFTER_PLAN_SQL)
    # a backfill reports every price date of its range (a `batch run` reports only its date, and a
    # date with no tally is then not reported at all)
    res = run_cli("batch", "backfill", "--from", DAYS[1].isoformat(), "--to", DAYS[2].isoformat(),
                  "--workers", "1", "--json", dsn=db.dsn)
    out = json.loads(res.out)["run"]
    assert res.code == 1, res.err
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE snapshot_date > %s", DAYS[0]) == 0
    by_day = {d["date"]: d for d in out["dates"]}
    assert by_day[DAYS[2].isoformat()]["failed"] == 5
    # nothing of day 2 was written: it is not "already done"
    assert by_day[DAYS[1].isoformat()]["already_done"] == 0, by_day[DAYS[1].isoformat()]


def test_a_chain_changed_between_two_one_write_dates_is_replanned_not_restarted(db: Db, monkeypatch) -> None:  # noqa: ANN001,E501
    """Right after a backfill from D1 wrote D1, D1 is taken away under it. `pnl batch undo` itself is
    refused now (a batch run is running: it holds no claim in the one-write phase, so undo checks the
    running runs too); the same change made another way (here: SQL, as an undo does it) is caught by
    the run: its next statement (D2) expects to follow D1, finds no previous snapshot, writes nothing,
    and re-plans those portfolios the two-step way. The chains start on D1 again, never on D2 with
    D1's P&L lost."""
    book = random_book(db.conn, 5, DAYS)
    real = batch.insert_complete
    undone = []

    async def write_then_undo(conn, run_id, day, follows):  # noqa: ANN001, ANN202
        out = await real(conn, run_id, day, follows)
        if day == DAYS[0] and not undone:
            undone.append(run_cli("batch", "undo", "--from", DAYS[0].isoformat(), "--yes", dsn=db.dsn))
            db.execute("DELETE FROM portfolio_snapshots WHERE snapshot_date >= %s", DAYS[0])
            for pid, balance in book.balances.items():
                db.execute("UPDATE portfolios SET equity_balance = %s WHERE id = %s", balance, pid)
        return out

    monkeypatch.setattr(batch, "insert_complete", write_then_undo)

    result = run_range(db, DAYS[2], DAYS[0])
    assert undone[0].code == 1 and "running" in undone[0].err, undone[0].err
    assert result.failed == 0 and result.held == 0
    firsts = {d for (d,) in db.all("SELECT min(snapshot_date) FROM portfolio_snapshots GROUP BY portfolio_id")}
    assert firsts == {DAYS[0]}, firsts
    assert_chains(db, book, DAYS)
