"""Property-based: any interleaving of runs, crashes, takeovers and zombies over a
few portfolios and dates leaves one snapshot per (portfolio, date), and every
complete chain equal to a clean replay from the starting balance."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal as D

import asyncpg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pnl import batch
from pnl.queries import sql
from tests.conftest import Db, run_cli
from tests.data import add_flow, add_portfolio, add_positions, add_prices
from tests.reference import Position, replay

DAYS = [date(2026, 7, 1), date(2026, 7, 2), date(2026, 7, 3)]
PRICES = {
    "AAA": {date(2026, 6, 30): D(100), DAYS[0]: D(101), DAYS[1]: D("99.5"), DAYS[2]: D(103)},
    "OPT": {date(2026, 6, 30): D("2.1"), DAYS[0]: D("2.4"), DAYS[1]: D("1.9"), DAYS[2]: D("2.2")},
}
BOOK = {
    "long+option": (D(1000), [Position("AAA", D(5), date(2026, 6, 1), D(90)),
                             Position("OPT", D(-3), date(2026, 6, 1), D(2), multiplier=D(100))], []),
    "trader": (D(500), [Position("AAA", D(-2), DAYS[0], D("100.5"), exit_date=DAYS[2], exit_price=D(102))],
               [(DAYS[1], D(250))]),
    "cash": (D(0), [], [(DAYS[0], D(100)), (DAYS[2], D(-40))]),
}
HOUR = timedelta(hours=1)

portfolio_sets = st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.integers(0, 2), st.integers(0, 2), portfolio_sets),      # claim + finalize
        st.tuples(st.just("claim"), st.integers(0, 2), st.integers(0, 2), portfolio_sets),    # claim, then crash
        st.tuples(st.just("expire"), st.integers(0, 2), st.just(0), st.just([])),             # leases run out
        st.tuples(st.just("finish"), st.integers(0, 2), st.integers(0, 2), st.just([])),      # late/zombie finalize
        st.tuples(st.just("release"), st.integers(0, 2), st.integers(0, 2), st.just([])),
    ),
    min_size=1, max_size=14,
)


async def check(conn: asyncpg.Connection, pids: list[int]) -> None:
    dup = await conn.fetchval("SELECT count(*) FROM (SELECT 1 FROM portfolio_snapshots"
                              " GROUP BY portfolio_id, snapshot_date HAVING count(*) > 1) AS d")
    assert dup == 0
    for pid, (balance, positions, flows) in zip(pids, BOOK.values(), strict=True):
        rows = await conn.fetch("SELECT snapshot_date, opening_equity, daily_pnl, capital_flow, net_asset_value,"
                                " cumulative_pnl FROM portfolio_snapshots WHERE portfolio_id = $1 AND is_complete"
                                " ORDER BY snapshot_date", pid)
        chain = replay(balance, positions, PRICES, flows, [r["snapshot_date"] for r in rows])
        assert [tuple(r.values())[1:] for r in rows] == [
            (s.opening, s.pnl, s.flow, s.nav, s.cumulative) for s in chain], pid
        equity = await conn.fetchval("SELECT equity_balance FROM portfolios WHERE id = $1", pid)
        assert equity == (chain[-1].nav if chain else balance), pid


async def play(dsn: str, pids: list[int], schedule: list[tuple[str, int, int, list[int]]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE portfolio_snapshots, batch_runs RESTART IDENTITY")
        for pid, (balance, _, _) in zip(pids, BOOK.values(), strict=True):
            await conn.execute("UPDATE portfolios SET equity_balance = $2 WHERE id = $1", pid, balance)
        runs = [(await conn.fetchrow(sql("runs/start_run"), DAYS[0], "test", i))["id"] for i in range(3)]
        held: dict[tuple[int, int], list[int]] = {}
        for action, r, d, which in schedule:
            run, day, ids = runs[r], DAYS[d], sorted(pids[i] for i in which)
            if action in ("run", "claim"):
                claim = await batch.claim_chunk(conn, run, day, ids, HOUR)
                held[(r, d)] = sorted(set(held.get((r, d), [])) | set(claim.owned))
                if action == "run" and claim.owned:
                    await batch.finalize_chunk(conn, run, day, claim.owned)
            elif action == "expire":
                await conn.execute("UPDATE portfolio_snapshots SET lease_expires_at = now() - interval '1 second'"
                                   " WHERE batch_run_id = $1 AND NOT is_complete", run)
            elif action == "finish" and held.get((r, d)):
                await batch.finalize_chunk(conn, run, day, held[(r, d)])     # may be a zombie: fenced
            elif action == "release" and held.get((r, d)):
                await batch.release_claims(conn, run, day, held[(r, d)])
            await check(conn, pids)
        # Whatever happened, expired claims are recovered and each date finishes, in order.
        await conn.execute("UPDATE portfolio_snapshots SET lease_expires_at = now() - interval '1 second'"
                           " WHERE NOT is_complete")
        final = (await conn.fetchrow(sql("runs/start_run"), DAYS[0], "test", 99))["id"]
        for day in DAYS:
            claim = await batch.claim_chunk(conn, final, day, pids, HOUR)
            if claim.owned:
                await batch.finalize_chunk(conn, final, day, claim.owned)
        await check(conn, pids)
        assert await conn.fetchval("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") == 0
    finally:
        await conn.close()


def make_book(db: Db) -> list[int]:
    add_prices(db.conn, PRICES)
    pids = []
    for name, (balance, positions, flows) in BOOK.items():
        pid = add_portfolio(db.conn, name, balance)
        add_positions(db.conn, pid, positions)
        for day, amount in flows:
            add_flow(db.conn, pid, day, amount)
        pids.append(pid)
    return pids


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=steps)
# Day 1 claimed and stalled; day 2 runs; then day 1's owner finishes late.
@example(schedule=[("claim", 0, 0, [2]), ("run", 1, 1, [2]), ("finish", 0, 0, [])])
# A crashed claim is taken over, then the original owner wakes up (zombie).
@example(schedule=[("claim", 0, 0, [0, 1]), ("expire", 0, 0, []), ("run", 1, 0, [0, 1]), ("finish", 0, 0, [])])
def test_any_interleaving_keeps_every_chain_exact(db: Db, schedule: list[tuple[str, int, int, list[int]]]) -> None:
    pids = db.all("SELECT id FROM portfolios ORDER BY id")
    if not pids:
        make_book(db)
        pids = db.all("SELECT id FROM portfolios ORDER BY id")
    asyncio.run(play(db.dsn, [p for (p,) in pids], schedule))


def test_a_date_whose_previous_day_is_unfinished_waits_for_it(db: Db) -> None:
    pids = make_book(db)
    # Another run holds (live) the first day's claim of the first portfolio.
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id,"
               " claimed_at, lease_expires_at) VALUES (%s, %s, false, 4242, now(), now() + interval '1 hour')",
               pids[0], DAYS[0])
    res = run_cli("batch", "run", "--date", DAYS[1].isoformat(), "--json", dsn=db.dsn)
    assert res.code == 1
    assert "claimed but unfinished" in res.out
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s", pids[0]) == 1
    # The other two went ahead: nothing was holding them back.
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE is_complete") == 2
    # Once the earlier day is done, the later one goes through, and the chain is exact.
    db.execute("DELETE FROM portfolio_snapshots WHERE batch_run_id = 4242")
    assert run_cli("batch", "run", "--date", DAYS[0].isoformat(), "--portfolio", str(pids[0]), dsn=db.dsn).code == 0
    res = run_cli("batch", "run", "--date", DAYS[1].isoformat(), "--json", dsn=db.dsn)
    assert res.code == 0 and '"processed": 1' in res.out
    asyncio.run(_check(db.dsn, pids))


async def _check(dsn: str, pids: list[int]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await check(conn, pids)
    finally:
        await conn.close()
