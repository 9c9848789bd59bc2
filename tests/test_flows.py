"""Command flows as library calls (what an Airflow or Dagster task would do):
plan, look at the plan, apply exactly that plan. Asserted on the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import TypeVar

import asyncpg
import pytest

from pnl import cleanup, dedupe, repair
from pnl.db import DbSettings, connect_pool
from pnl.errors import PnlError
from tests.conftest import Db, run_cli
from tests.data import add_flow, add_portfolio, add_positions, add_prices
from tests.reference import Position

T = TypeVar("T")


def on_pool(dsn: str, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    async def go() -> T:
        async with connect_pool(DbSettings(dsn)) as pool:
            return await work(pool)

    return asyncio.run(go())


def claim(db: Db, pid: int, day: str, run: int, age: str) -> int:
    return db.scalar("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id,"
                     " claimed_at, lease_expires_at) VALUES (%s, %s, false, %s, now() - %s::interval,"
                     " now() - %s::interval + interval '15 minutes') RETURNING id", pid, day, run, age, age)


def test_cleanup_deletes_exactly_the_listed_claims(db: Db) -> None:
    pids = [add_portfolio(db.conn, f"p{i}") for i in range(4)]
    listed = [claim(db, pids[0], "2026-06-01", 7, "2 hours"), claim(db, pids[1], "2026-06-01", 7, "2 hours"),
              claim(db, pids[2], "2026-06-01", 7, "2 hours")]
    plan = on_pool(db.dsn, lambda pool: cleanup.plan_cleanup(pool, timedelta(hours=1), None))
    assert [c.snapshot_id for c in plan.claims] == listed
    # After the plan was shown: a new old claim appears (not shown: must stay), one listed claim is
    # taken over by a live run (no longer the listed claim: must stay), one is finished (must stay).
    unseen = claim(db, pids[3], "2026-06-01", 9, "3 hours")
    db.execute("UPDATE portfolio_snapshots SET batch_run_id = 8 WHERE id = %s", listed[1])
    db.execute("UPDATE portfolio_snapshots SET is_complete = true, net_asset_value = 1 WHERE id = %s", listed[2])
    result = on_pool(db.dsn, lambda pool: cleanup.apply_cleanup(pool, plan))
    assert [c.snapshot_id for c in result.deleted] == [listed[0]] and result.left_alone == 2
    assert sorted(r[0] for r in db.all("SELECT id FROM portfolio_snapshots")) == sorted([*listed[1:], unseen])


def test_dedupe_deletes_exactly_the_planned_rows(empty_db: Db) -> None:
    db = empty_db
    assert run_cli("migrate", "--to", "0002b", dsn=db.dsn).code == 0
    pid = add_portfolio(db.conn, "legacy", 100)

    def row(day: str, nav: int, created: str) -> int:
        return db.scalar("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, net_asset_value, created_at)"
                         " VALUES (%s, %s, %s, %s::timestamptz) RETURNING id", pid, day, nav, created)

    a_keep, a_extra = row("2026-01-05", 110, "2026-01-05 18:00Z"), row("2026-01-05", 121, "2026-01-05 19:00Z")
    b_keep, b_extra = row("2026-01-06", 99, "2026-01-06 18:00Z"), row("2026-01-06", 98, "2026-01-06 19:00Z")
    plan = on_pool(db.dsn, dedupe.plan_dedupe)
    assert sorted(r.deleted_snapshot_id for r in plan.rows) == [a_extra, b_extra]
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 4          # the plan changed nothing
    # Meanwhile: a third row for 2026-01-05 (never shown), and an earlier row for 2026-01-06
    # that the rule now keeps (so the planned extra stays the extra, the planned keeper is not deleted).
    a_new = row("2026-01-05", 133, "2026-01-05 20:00Z")
    b_earlier = row("2026-01-06", 97, "2026-01-06 17:00Z")
    result = on_pool(db.dsn, lambda pool: dedupe.apply_dedupe(pool, plan, batch_size=1))
    assert sorted(r.deleted_snapshot_id for r in result.rows) == [a_extra, b_extra]
    assert sorted(r[0] for r in db.all("SELECT id FROM portfolio_snapshots")) == sorted(
        [a_keep, a_new, b_keep, b_earlier])
    assert result.remaining_groups == 2                                      # left for a new, reviewed plan
    assert db.scalar("SELECT count(*) FROM snapshot_dedupe_audit") == 2


D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)


def test_repair_applies_exactly_the_previewed_navs_or_nothing(db: Db) -> None:
    add_prices(db.conn, {"X": {date(2026, 2, 27): 10, D1: 11, D2: 12, D3: 13}})
    pid = add_portfolio(db.conn, "p", 1000)
    add_positions(db.conn, pid, [Position("X", 10, date(2026, 2, 1), 10)])
    assert run_cli("batch", "backfill", "--from", D1.isoformat(), "--to", D3.isoformat(), dsn=db.dsn).code == 0
    db.execute("UPDATE portfolio_snapshots SET net_asset_value = net_asset_value + 500 WHERE snapshot_date = %s", D2)
    plan = on_pool(db.dsn, lambda pool: repair.plan_repair(pool, [pid], D2))
    assert plan.targets == {pid: D2} and plan.preview.changed == 1
    before = db.all("SELECT * FROM portfolio_snapshots ORDER BY id")
    # The data changes after the preview: a capital flow booked late. (A late price
    # correction would not change the replay: it values with the dates' marks.)
    add_flow(db.conn, pid, D3, 7)
    with pytest.raises(PnlError, match="changed since the repair was previewed"):
        on_pool(db.dsn, lambda pool: repair.apply_repair(pool, plan))
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == before
    assert db.scalar("SELECT count(*) FROM snapshot_repair_audit") == 0
    # A fresh plan on the data as it is now applies.
    plan = on_pool(db.dsn, lambda pool: repair.plan_repair(pool, [pid], D2))
    result = on_pool(db.dsn, lambda pool: repair.apply_repair(pool, plan))
    assert result.changes == plan.preview.changes
    navs = [r[0] for r in db.all("SELECT net_asset_value FROM portfolio_snapshots ORDER BY snapshot_date")]
    assert navs == [1010, 1020, 1037]
