"""Many OS processes running the same date at once apply each portfolio once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from tests.conftest import Db
from tests.data import random_book
from tests.reference import replay

ROOT = Path(__file__).resolve().parent.parent
DAYS = [date(2026, 4, 6), date(2026, 4, 7)]


def start_runs(dsn: str, day: date, n: int, chunk_size: int, pause: float = 0.0) -> list[subprocess.Popen]:
    env = {**os.environ, "DATABASE_URL": dsn}
    if pause:
        env["PNL_TEST_PAUSE_AFTER_CLAIM"] = str(pause)
    return [
        subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "batch", "run", "--date", day.isoformat(),
                          "--chunk-size", str(chunk_size), "--json"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]


def test_eight_processes_same_date_apply_each_portfolio_exactly_once(db: Db) -> None:
    book = random_book(db.conn, n_portfolios=500, days=DAYS)
    for day in DAYS:
        procs = start_runs(db.dsn, day, n=8, chunk_size=25, pause=0.02)
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            outs.append(json.loads(out))
        # Every process saw every portfolio; together they processed each once.
        assert all(o["processed"] + o["skipped"] == 500 for o in outs)
        assert sum(o["processed"] for o in outs) == 500
        assert sum(1 for o in outs if o["processed"] > 0) >= 2, "the runs did not actually overlap"

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
