"""`pnl demo`: the whole job, from nothing, on the embedded database, told as a story.

It creates a scratch database, migrates, seeds, backfills some history, then
reproduces the incident the project exists for (two batch processes for the
same date at the same moment, then an operator re-run) with real OS processes,
and proves from the database that each portfolio was applied exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar

import asyncpg

import pnl
from pnl import migrate
from pnl.embedded import Embedded
from pnl.errors import PnlError
from pnl.queries import sql
from pnl.seed import SeedSpec, seed
from pnl.verify import run_checks

DEMO_DATABASE = "pnl_demo"     # also spelled in sql/demo/*_demo_database.sql
GATE_S = 20.0                  # the starting gate opens after this at the latest (pnl's lock_timeout is 30 s)
T = TypeVar("T")
Say = Callable[[str], None]


@dataclass
class DemoResult:
    database: str
    seeded: dict = field(default_factory=dict)
    history_days: int = 0
    day: str = ""
    racers: list[dict] = field(default_factory=list)
    overlap: list[str] = field(default_factory=list)    # run ids running together at one moment
    waiting: int = 0                                      # chunk statements waiting on a lock then
    rerun: dict = field(default_factory=dict)
    proof: dict = field(default_factory=dict)
    healthy: bool = False

    @property
    def exactly_once(self) -> bool:
        p = self.proof
        return bool(p) and p["snapshots"] == p["portfolios"] == p["complete"] == p["distinct_portfolios"] \
            and p["equity_mismatches"] == 0 and sum(r["processed"] for r in self.racers) == p["portfolios"] \
            and self.rerun.get("processed") == 0

    @property
    def overlapped(self) -> bool:
        """Both racing runs were in flight at the same moment, their chunk
        statements waiting on locks (seen in the database)."""
        return (len(self.overlap) == 2 and set(self.overlap) == {str(r["run_id"]) for r in self.racers}
                and self.waiting >= 3)

    def to_json(self) -> dict:
        return {**self.__dict__, "exactly_once": self.exactly_once, "overlapped": self.overlapped}


def _pnl(dsn: str, *args: str) -> subprocess.Popen:
    """`python -m pnl ARGS --json` as a real process, on the very pnl that runs
    this demo (installed or not, from any working directory)."""
    here = str(Path(pnl.__file__).resolve().parent.parent)       # holds pnl/ and cli.py
    env = {**os.environ, "DATABASE_URL": dsn,
           "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    env.pop("PNL_EMBEDDED", None)
    # -P: the working directory is not put on sys.path (it might hold another cli.py).
    return subprocess.Popen([sys.executable, "-P", "-m", "pnl", *args, "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def _result(proc: subprocess.Popen, what: str) -> dict:
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0 or not out.strip():
        raise PnlError(f"demo: {what} failed ({proc.returncode}): {err.strip() or out.strip()}")
    return json.loads(out)


async def _recreate(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(sql("demo/drop_demo_database"))
        await conn.execute(sql("demo/create_demo_database"))
    finally:
        await conn.close()


def _on_pool(dsn: str, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run work(pool) on a short-lived pool of the demo database."""

    async def go() -> T:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


async def _race(dsn: str, day: date) -> tuple[dict[int, int], list[subprocess.Popen]]:
    """Start two `pnl batch run --date DAY` processes behind a starting gate
    (sql/demo/hold_equity_writes.sql): neither can write a snapshot, until the
    database shows both running with their chunk statements waiting (or GATE_S
    passed). Returns {run id: chunk statements waiting} as seen at that moment,
    and the processes."""
    gate = await asyncpg.connect(dsn)
    racers: list[subprocess.Popen] = []
    owners: dict[int, int] = {}
    try:
        async with gate.transaction():
            await gate.execute(sql("demo/hold_equity_writes"))
            # --wait: a racer that finishes while the other still holds a chunk waits for it (exit 0, not 75).
            racers = [_pnl(dsn, "batch", "run", "--date", day.isoformat(), "--chunk-size", "10", "--wait")
                      for _ in range(2)]
            deadline = time.monotonic() + GATE_S
            while time.monotonic() < deadline and all(p.poll() is None for p in racers):
                await gate.execute(sql("demo/fresh_activity"))
                owners = {r["batch_run_id"]: r["waiting"] for r in await gate.fetch(sql("demo/runs_in_flight"), day)}
                # a run's --workers (2) chunks wait at the gate; one more waiting statement is the other run's
                if len(owners) >= 2 and min(owners.values()) >= 3:
                    break
                await asyncio.sleep(0.05)
            # Leaving the block commits nothing (the gate wrote nothing) and releases the lock.
    finally:
        await gate.close()
    return owners, racers


async def _prove(pool: asyncpg.Pool, day: date) -> dict:
    async with pool.acquire() as conn:
        return dict(await conn.fetchrow(sql("demo/prove_exactly_once"), day))


def run_demo(embedded: Embedded, spec: SeedSpec, say: Say) -> DemoResult:
    """The whole story on the embedded server (started if needed), told through `say`."""
    _, started = embedded.start()
    if started:
        say("0. started the embedded PostgreSQL")
    admin_dsn = embedded.admin_dsn()
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + DEMO_DATABASE
    result = DemoResult(database=DEMO_DATABASE)
    asyncio.run(_recreate(admin_dsn))
    applied = migrate.apply(dsn)
    say(f"1. a fresh database '{DEMO_DATABASE}', migrated ({len(applied)} migrations: the legacy schema, "
        "then the unique (portfolio, date) constraint that makes the claim possible)")

    result.seeded = _on_pool(dsn, lambda pool: seed(pool, spec)).to_json()
    s = result.seeded
    say(f"2. seeded: {s['portfolios']} portfolios, {s['positions']} positions (longs, shorts, options x100, "
        f"trades opened and closed in the window), {s['capital_flows']} capital flows, prices for "
        f"{s['trading_days']} weekdays from {s['first_trading_day']} to {s['last_trading_day']}")

    last = date.fromisoformat(s["last_trading_day"])
    first = date.fromisoformat(s["first_trading_day"])
    if s["trading_days"] > 1:
        history = _result(_pnl(dsn, "batch", "backfill", "--from", first.isoformat(), "--to",
                               date.fromordinal(last.toordinal() - 1).isoformat()), "backfill")
        result.history_days = history["price_dates"]
        say(f"3. history: `pnl batch backfill` ran {history['price_dates']} dates in order, as one run, "
            f"{history['run']['processed']} snapshots, each day's equity set from the day before")

    result.day = last.isoformat()
    say(f"4. the incident we exist for: two `pnl batch run --date {last}` processes at the same moment "
        "(a cron retry overlapping a manual run)")
    owners, racers = asyncio.run(_race(dsn, last))
    result.racers = [_result(p, "a racing batch run") for p in racers]
    result.overlap = [str(run) for run in owners]
    result.waiting = min(owners.values(), default=0)
    if result.overlapped:
        runs = " and ".join(f"#{run}" for run in owners)
        say(f"     seen in the database at one moment: runs {runs} both in flight, {result.waiting} of their "
            "chunk statements waiting on locks (the second run on a chunk waits for the first one's slots)")
    for name, r in zip("AB", result.racers, strict=True):
        say(f"     process {name}: processed {r['processed']}, already done {r['already_done']} "
            "(a slot the other had already written or claimed is left alone)")
    result.rerun = _result(_pnl(dsn, "batch", "run", "--date", last.isoformat()), "the re-run")
    say(f"   and an operator re-runs it: processed {result.rerun['processed']}, "
        f"already done {result.rerun['already_done']}")

    result.proof = _on_pool(dsn, lambda pool: _prove(pool, last))
    p = result.proof
    say(f"5. proof, from the database: {p['snapshots']} snapshots for {last} for {p['portfolios']} portfolios, "
        f"{p['complete']} complete, {p['distinct_portfolios']} distinct; equity differs from the latest NAV "
        f"for {p['equity_mismatches']} portfolios -> "
        + ("each portfolio was applied exactly once" if result.exactly_once else "NOT exactly once"))

    checks = _on_pool(dsn, run_checks)
    result.healthy = all(c.healthy for c in checks)
    say(f"6. pnl verify: {'healthy' if result.healthy else 'NOT healthy'} "
        f"({len(checks)} checks: {', '.join(c.name for c in checks)})")
    return result
