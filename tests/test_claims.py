"""The claim protocol at the SQL level: takeover of expired leases, fencing."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from decimal import Decimal as D

import asyncpg

from pnl.queries import sql
from tests.conftest import Db, run_cli
from tests.data import add_portfolio, add_positions, add_prices
from tests.reference import Position

DAY = date(2026, 5, 4)


def call(db: Db, name: str, *args: object) -> list[tuple]:
    """Run one sql/ file through asyncpg, exactly as pnl/ does."""

    async def go() -> list[tuple]:
        conn = await asyncpg.connect(db.dsn)
        try:
            return [tuple(r.values()) for r in await conn.fetch(sql(name), *args)]
        finally:
            await conn.close()

    return asyncio.run(go())


def setup(db: Db) -> int:
    add_prices(db.conn, {"AAA": {date(2026, 5, 1): D(10), DAY: D(11)}})
    pid = add_portfolio(db.conn, "p", 100)
    add_positions(db.conn, pid, [Position("AAA", D(10), date(2026, 4, 1), D(9))])
    return pid


def claim(db: Db, pid: int, run_id: int, expired: bool) -> None:
    lease = "now() - interval '1 minute'" if expired else "now() + interval '15 minutes'"
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id,"
               f" claimed_at, lease_expires_at) VALUES (%s, %s, false, %s, now(), {lease})", pid, DAY, run_id)


def test_expired_claim_is_taken_over_and_completed_once(db: Db) -> None:
    pid = setup(db)
    claim(db, pid, run_id=777, expired=True)
    res = run_cli("batch", "run", "--date", DAY.isoformat(), "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert (out["processed"], out["reclaimed"], out["already_done"]) == (1, 1, 0)
    row = db.one("SELECT count(*), bool_and(is_complete), max(batch_run_id), max(net_asset_value)"
                 " FROM portfolio_snapshots WHERE portfolio_id = %s", pid)
    assert row == (1, True, out["run_id"], D("110.0000"))  # 100 + 10*(11-10)
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pid) == D("110.0000")


def test_live_claim_of_another_run_is_left_alone(db: Db) -> None:
    pid = setup(db)
    claim(db, pid, run_id=777, expired=False)
    res = run_cli("batch", "run", "--date", DAY.isoformat(), "--json", dsn=db.dsn)
    assert res.code == 75, res.err                  # only held: someone else owns it, retry later
    out = json.loads(res.out)
    assert (out["processed"], out["reclaimed"], out["held"], out["status"]) == (0, 0, 1, "held")
    assert [(h["run_id"], h["claims"]) for h in out["holders"]] == [(777, 1)]
    assert db.one("SELECT is_complete, batch_run_id FROM portfolio_snapshots WHERE portfolio_id = %s", pid) \
        == (False, 777)
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pid) == D(100)


def test_a_run_that_lost_its_claim_finalizes_nothing(db: Db) -> None:
    """Fencing: run 1 claimed, run 2 took over; run 1's finalize must write nothing."""
    pid = setup(db)
    claim(db, pid, run_id=1, expired=True)
    taken = call(db, "batch/claim_owed_dates", 2, DAY, [pid], timedelta(minutes=15), [DAY], False, True, None)
    assert taken == [([pid], [DAY], [pid], [DAY], 1, [DAY], [1], [pid], [None])]
    zombie = call(db, "batch/finalize_claimed", 1, DAY, [pid], True)[0]
    assert zombie == ([], [], [], [], 0)
    assert db.one("SELECT is_complete, batch_run_id FROM portfolio_snapshots WHERE portfolio_id = %s", pid) \
        == (False, 2)
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pid) == D(100)
    call(db, "batch/fix_marks", DAY, 2)             # the winner fixes the date's marks first, as a run does
    winner = call(db, "batch/finalize_claimed", 2, DAY, [pid], True)[0]
    assert winner[0] == [pid]
    assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pid) == D("110.0000")
    # And the zombie, trying again after the winner finished, still changes nothing.
    assert call(db, "batch/finalize_claimed", 1, DAY, [pid], True)[0] == ([], [], [], [], 0)
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 1
