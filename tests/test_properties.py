"""Property-based: any interleaving of runs, crashes, takeovers and zombies over a
few portfolios and dates leaves one snapshot per (portfolio, date), and every
complete chain equal to a clean replay from the starting balance."""

from __future__ import annotations

import asyncio
import json
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
        # Gap-free: a chain covers every price date from its first snapshot to its last.
        days = [r["snapshot_date"] for r in rows]
        if days:
            assert days == DAYS[DAYS.index(days[0]):DAYS.index(days[-1]) + 1], (pid, days)
        chain = replay(balance, positions, PRICES, flows, [r["snapshot_date"] for r in rows])
        assert [tuple(r.values())[1:] for r in rows] == [
            (s.opening, s.pnl, s.flow, s.nav, s.cumulative) for s in chain], pid
        equity = await conn.fetchval("SELECT equity_balance FROM portfolios WHERE id = $1", pid)
        assert equity == (chain[-1].nav if chain else balance), pid


def owned_prefixes(plan: batch.ChunkPlan) -> set[tuple[int, date]]:
    """The slots a run may finalize: each portfolio's owned dates up to the first it does not own."""
    out = set()
    for pid, dates in plan.owed.items():
        for day in dates:
            if (pid, day) not in plan.got:
                break
            out.add((pid, day))
    return out


async def finish_in_order(conn: asyncpg.Connection, run: int, slots: set[tuple[int, date]]) -> None:
    for day in sorted({d for _, d in slots}):
        await batch.fix_marks(conn, day, run)        # as a run does before it finalizes a date
        await batch.finalize_chunk(conn, run, day, sorted(p for p, d in slots if d == day))


async def play(dsn: str, pids: list[int], schedule: list[tuple[str, int, int, list[int]]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE portfolio_snapshots, batch_runs RESTART IDENTITY")
        for pid, (balance, _, _) in zip(pids, BOOK.values(), strict=True):
            await conn.execute("UPDATE portfolios SET equity_balance = $2 WHERE id = $1", pid, balance)
        runs = [(await conn.fetchrow(sql("runs/start_run"), DAYS[0], "test", i, None, None))["id"] for i in range(3)]
        held: dict[int, set[tuple[int, date]]] = {}
        for action, r, d, which in schedule:
            run, day, ids = runs[r], DAYS[d], sorted(pids[i] for i in which)
            if action in ("run", "claim"):
                # the catch-up up to `day` (portfolios without a chain start there)
                plan = await batch.claim_owed(conn, run, day, ids, HOUR, [day] * len(ids))
                held.setdefault(r, set()).update(plan.got)
                if action == "run":
                    await finish_in_order(conn, run, owned_prefixes(plan))
            elif action == "expire":
                await conn.execute("UPDATE portfolio_snapshots SET lease_expires_at = now() - interval '1 second'"
                                   " WHERE batch_run_id = $1 AND NOT is_complete", run)
            elif action == "finish" and held.get(r):
                await finish_in_order(conn, run, held[r])              # may be a zombie: fenced
            elif action == "release" and held.get(r):
                mine = sorted({p for p, _ in held[r]})
                await batch.release_claims(conn, run, dict.fromkeys(mine, day))
            await check(conn, pids)
        # Whatever happened, expired claims are recovered and each date finishes, in order.
        await conn.execute("UPDATE portfolio_snapshots SET lease_expires_at = now() - interval '1 second'"
                           " WHERE NOT is_complete")
        final = (await conn.fetchrow(sql("runs/start_run"), DAYS[0], "test", 99, None, None))["id"]
        plan = await batch.claim_owed(conn, final, DAYS[-1], pids, HOUR, [DAYS[0]] * len(pids))
        assert owned_prefixes(plan) == plan.got                       # nobody else holds anything now
        await finish_in_order(conn, final, plan.got)
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
    assert res.code == 75, res.err                     # only held, by run 4242: retry later
    out = json.loads(res.out)
    assert (out["processed"], out["held"], [h["run_id"] for h in out["holders"]]) == (2, 1, [4242])
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
