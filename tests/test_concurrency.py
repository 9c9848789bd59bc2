"""Many OS processes running the same date at once apply each portfolio once."""

from __future__ import annotations

import json
import subprocess
from datetime import date

from tests.conftest import Db, run_cli
from tests.data import random_book
from tests.procs import (
    claim_owners,
    expire_leases,
    hold_finalize,
    open_finalize,
    slow_finalize,
    start_batch,
    unslow_finalize,
    wait_for,
)
from tests.reference import replay

DAYS = [date(2026, 4, 6), date(2026, 4, 7)]


def start_runs(dsn: str, day: date, n: int, chunk_size: int) -> list[subprocess.Popen]:
    return [start_batch(dsn, "--date", day.isoformat(), "--chunk-size", str(chunk_size)) for _ in range(n)]


def test_eight_processes_same_date_apply_each_portfolio_exactly_once(db: Db) -> None:
    book = random_book(db.conn, n_portfolios=500, days=DAYS)
    for day in DAYS:
        # Each process's first finalizes wait (in the database) until the test has
        # seen all eight runs holding claims at the same moment: the overlap is
        # proven from the database, not assumed from timing. 8 runs x 2 workers
        # hold at most 16 of the 20 chunks, so every run gets a chunk to hold.
        hold_finalize(db.dsn, times=16)
        procs = start_runs(db.dsn, day, n=8, chunk_size=25)
        try:
            wait_for(lambda: len(claim_owners(db.dsn)) == 8, timeout=120, what="all eight runs holding claims")
            owners = claim_owners(db.dsn)
        finally:
            open_finalize(db.dsn)
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            outs.append(json.loads(out))
        assert set(owners) == {o["run_id"] for o in outs}       # at one moment, every run owned claims
        assert all(o["processed"] > 0 for o in outs)
        # Every process saw every portfolio; together they processed each once.
        assert all(o["processed"] + o["skipped"] == 500 for o in outs)
        assert sum(o["processed"] for o in outs) == 500

    rows = db.all("SELECT portfolio_id, snapshot_date, count(*), bool_and(is_complete)"
                  " FROM portfolio_snapshots GROUP BY 1, 2")
    assert len(rows) == 500 * len(DAYS)
    assert all(count == 1 and complete for _, _, count, complete in rows)

    equity = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    navs = {(pid, day): nav for pid, day, nav in db.all(
        "SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots")}
    for pid, balance in book.balances.items():
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], DAYS)
        assert [navs[(pid, s.day)] for s in chain] == [s.nav for s in chain], pid
        assert equity[pid] == chain[-1].nav, pid


def test_sixteen_processes_with_random_kills_then_one_final_run(db: Db) -> None:
    import random
    import signal
    import time

    from tests.procs import finish
    day = DAYS[0]
    book = random_book(db.conn, n_portfolios=2000, days=[day], n_symbols=200, seed=11)
    rng = random.Random(2026)
    slow_finalize(db.dsn, 0.05)              # every chunk in flight a little longer, so kills land mid-run
    procs = [start_batch(db.dsn, "--date", day.isoformat(), "--chunk-size", "50", "--lease", "1h")
             for _ in range(16)]
    victims = rng.sample(range(16), 5)
    kill_at = sorted((rng.uniform(0.3, 1.5), v) for v in victims)
    t0 = time.monotonic()
    for at, v in kill_at:
        time.sleep(max(0.0, at - (time.monotonic() - t0)))
        procs[v].send_signal(signal.SIGKILL)
    survivors = []
    for i, p in enumerate(procs):
        code, out, err = finish(p, timeout=300)
        if i in victims:
            assert code in (0, -signal.SIGKILL), err    # a victim may have finished before its kill
        else:
            assert code == 0, err
            survivors.append(out)
    assert sum(o["processed"] for o in survivors) <= 2000
    unslow_finalize(db.dsn)
    expire_leases(db.dsn)                                 # every process is gone: the victims' hour passes
    code, final, err = finish(start_batch(db.dsn, "--date", day.isoformat()))
    assert code == 0, err
    assert final is not None and final["failed"] == 0
    print("final run:", final["processed"], "processed,", final["reclaimed"], "reclaimed")
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete") == 0
    rows = db.all("SELECT portfolio_id, count(*), bool_and(is_complete) FROM portfolio_snapshots GROUP BY 1")
    assert len(rows) == 2000 and all(n == 1 and ok for _, n, ok in rows)
    equity = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    for pid, balance in book.balances.items():
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], [day])
        assert equity[pid] == chain[-1].nav, pid


def test_workers_in_one_process_share_the_chunks(db: Db) -> None:
    book = random_book(db.conn, n_portfolios=300, days=DAYS[:1], seed=5)
    procs = start_runs(db.dsn, DAYS[0], n=1, chunk_size=10)   # a plain run alongside, for contention
    res = run_cli("batch", "run", "--date", DAYS[0].isoformat(), "--workers", "4", "--chunk-size", "10", "--json",
                  dsn=db.dsn)
    out, err = procs[0].communicate(timeout=120)
    assert res.code == 0 and procs[0].returncode == 0, res.err + err
    assert json.loads(res.out)["processed"] + json.loads(out)["processed"] == 300
    rows = db.all("SELECT portfolio_id, count(*), bool_and(is_complete) FROM portfolio_snapshots GROUP BY 1")
    assert len(rows) == 300 and all(n == 1 and ok for _, n, ok in rows)
    equity = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    for pid, balance in book.balances.items():
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], DAYS[:1])
        assert equity[pid] == chain[-1].nav, pid
