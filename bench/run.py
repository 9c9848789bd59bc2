#!/usr/bin/env python3
"""Benchmark: the safe batch against the unsafe one-statement floor, side by side.

    python bench/run.py                         # 100,000 portfolios x 20 positions, 5,000 symbols
    python bench/run.py --quick                 # 20,000 portfolios, history 1,5: a couple of minutes
    python bench/run.py --portfolios 1000000    # the 1M run
    python bench/run.py --history 1,20,250      # the history axis (default 1,20,250; 'none' skips it)
    python bench/run.py --scaling 1,2,4,8       # processes / --workers (default 1,2,4,8; 'none' skips it)
    python bench/run.py --chunk-sizes 250,1000,5000,20000   # the chunk-size curve
    python bench/run.py --partition-snapshots   # portfolio_snapshots partitioned by month (docs/scaling.md 2)
    PNL_BENCH_DSN=postgresql://... python bench/run.py   # an existing server (a scratch database is made)

Against a scratch database it makes itself (by default on a throwaway local
PostgreSQL server, root-safe, like the tests), it generates the data, then
measures in one run:

goals (a book with no history; every row against both floors):
  floor           one INSERT ... SELECT computing every snapshot + one UPDATE of equity, one connection
  parallel floor  the same two statements split by portfolio-id range over as many connections as
                  the default `pnl batch run` uses (its --workers default), all at once
  cold            `pnl batch run` for the date, every portfolio processed (defaults), and --workers 1
  re-run          the same command again, every portfolio skipped
  processes       --workers (default 4) `pnl batch run` processes at once, from cold
  with the issue's goal per row (which floor it uses is in the goal) and a pass/fail marker.
scaling: cold runs with `--workers W` in one process and with P processes of `--workers 1`.
WAL: bytes per portfolio (pg_current_wal_lsn before/after), WAL records and full-page images
  (pg_stat_wal), and the rows inserted / updated / HOT-updated per table, floor vs batch: the
  physical cost of writing: the floor and the one-write batch insert each snapshot once.
history: for each depth H, a book with H prior price dates of complete snapshots (generated in one
  INSERT ... SELECT), then a one-date cold run for the next date (exactly one missing date; its WAL,
  full-page images and unique-index blocks read/hit), `pnl status --no-verify`, `pnl verify`, the
  catch-up's missing-dates query on its own, and catching up 5 missing price dates (`pnl batch run`
  when its --help mentions catch-up, else `pnl batch backfill` over the 5 dates); the flatness
  ratios (deepest vs shallowest) and the 5-dates/1-date ratio.

Every cold variant's rows are compared with the floor's, column by column, and
every catch-up date with the floor's step from the batch's previous date: any
difference fails the benchmark (exit 1). Goals not met are reported, not
failed. pnl child processes get the database URL through DATABASE_URL in
their environment, never in their argv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
CLI = ROOT / "cli.py"
sys.path.insert(0, str(ROOT))

from pnl import migrate  # noqa: E402
from pnl.batch import BatchOptions, check_prices  # noqa: E402
from pnl.db import planned_transaction  # noqa: E402
from pnl.embedded import server_bindir  # noqa: E402
from pnl.localpg import LocalServer, free_port, throwaway_dir  # noqa: E402
from pnl.queries import sql as pnl_sql  # noqa: E402

# A Friday: its history is the weekdays before it, and the 5 catch-up dates are
# the weekdays after it (all in the past, so a "no future dates" rule passes).
DAY = date(2026, 11, 20)
CATCH_UP = 5
SERVER_SETTINGS = {"shared_buffers": "2GB", "work_mem": "64MB", "maintenance_work_mem": "1GB",
                   "max_wal_size": "16GB", "checkpoint_timeout": "30min"}
# The issue's goals: (x floor at most, which floor). "floor" = the one-connection floor.
GOALS = {"default": (1.0, "floor"), "workers1": (1.3, "floor"), "processes": (1.2, "floor"),
         "rerun": (0.1, "floor")}


@dataclass
class Row:
    name: str
    seconds: float
    portfolios: int
    ratio: float | None = None
    ratio_parallel: float | None = None
    peak_rss_mb: float | None = None
    processed: int | None = None
    skipped: int | None = None
    wal_bytes_per_portfolio: float | None = None
    goal: str | None = None
    goal_met: bool | None = None

    @property
    def per_second(self) -> float:
        return self.portfolios / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "per_second": round(self.per_second, 1)}


@dataclass
class Floors:
    seconds: float
    parallel_seconds: float
    connections: int

    def rate(self, row: Row, goal: str | None = None) -> Row:
        row.ratio = row.seconds / self.seconds
        row.ratio_parallel = row.seconds / self.parallel_seconds
        if goal:
            bound, which = GOALS[goal]
            row.goal = f"<= {bound}x {which}"
            row.goal_met = (row.ratio if which == "floor" else row.ratio_parallel) <= bound
        return row


@dataclass
class Log:
    quiet: bool

    def __call__(self, *parts: object) -> None:
        if not self.quiet:
            print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- database helpers
async def missing_dates(dsn: str, day: date, chunk: int) -> tuple[float, int]:
    """The catch-up's "missing dates" query on its own: the batch's plan statement
    (sql/batch/claim_owed_dates.sql with claim = false: it writes nothing) over
    the whole book, chunk by chunk on one connection, as one run plans it, with
    the earliest date the run reports from its price check (not timed here).
    Returns (seconds, owed slots found). Session settings as pnl's (pnl/db.py)."""
    conn = await asyncpg.connect(dsn, server_settings={"jit": "off", "plan_cache_mode": "force_custom_plan"})
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM portfolios ORDER BY id")]
        earliest = (await check_prices(conn, day, day, BatchOptions())).report_from(day, (day,))   # as a run
        owed = 0
        t0 = time.perf_counter()
        for i in range(0, len(ids), chunk):
            part = ids[i:i + chunk]
            async with planned_transaction(conn):
                row = await conn.fetchrow(pnl_sql("batch/claim_owed_dates"), 0, day, part, timedelta(minutes=5),
                                          [day] * len(part), False, False, earliest)
            owed += len(row["owed_ids"])
        return time.perf_counter() - t0, owed
    finally:
        await conn.close()


def sql_file(name: str) -> str:
    return (BENCH / f"{name}.sql").read_text()


async def execute(dsn: str, query: str, *args: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET statement_timeout = 0")
        await conn.execute(query, *args) if not args else await conn.fetch(query, *args)
    finally:
        await conn.close()


async def fetchrow(dsn: str, query: str, *args: object) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET statement_timeout = 0")
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()


def weekdays(start: date, count: int, step: int) -> list[date]:
    """`count` weekdays from `start` (exclusive) going forward (step 1) or back (-1), ascending."""
    out, day = [], start
    while len(out) < count:
        day += timedelta(days=step)
        if day.weekday() < 5:
            out.append(day)
    return sorted(out)


# ---------------------------------------------------------------- pnl as child processes
def pnl_process(dsn: str, *args: str) -> subprocess.Popen:
    """`pnl ARGS --json` as a process. The DSN (with its password) goes through
    the environment, never the command line, which every user can read in `ps`."""
    cmd = [sys.executable, str(CLI), "--statement-timeout", "30m", *args, "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(dsn),
                            stdin=subprocess.DEVNULL)


def child_env(dsn: str) -> dict[str, str]:
    """The database URL goes to children through the environment, never argv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PNL_EMBEDDED", "PNL_BENCH_DSN")}
    env["DATABASE_URL"] = dsn
    return env


def run_pnl(dsn: str, *args: str) -> tuple[float, float, dict]:
    """Run `pnl ARGS --json` as a process: (wall seconds, peak RSS MB, its JSON)."""
    t0 = time.perf_counter()
    proc = pnl_process(dsn, *args)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"pnl {' '.join(args)} failed ({code}): {err.strip() or out.strip()}")
    return wall, usage.ru_maxrss / 1024, json.loads(out)


def run_processes(dsn: str, n: int, *args: str) -> tuple[float, float, list[dict]]:
    t0 = time.perf_counter()
    procs = [pnl_process(dsn, *args) for _ in range(n)]
    peak, outs = 0.0, []
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        peak = max(peak, usage.ru_maxrss / 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"a pnl process failed: {p.stderr.read()}")  # type: ignore[union-attr]
        outs.append(json.loads(p.stdout.read()))  # type: ignore[union-attr]
    return time.perf_counter() - t0, peak, outs


def has_catch_up(dsn: str) -> bool:
    """Does this pnl's `batch run` catch up missing dates by itself (its --help says so)?"""
    out = subprocess.run([sys.executable, str(CLI), "batch", "run", "--help"], capture_output=True, text=True,
                         env=child_env(dsn)).stdout
    return re.search(r"catch[- ]?up|catches up|caught up", out, re.IGNORECASE) is not None


def default_workers() -> int:
    """`pnl batch run`'s --workers default: the parallel floor uses as many connections."""
    try:
        import cli as pnl_cli
        return int(next(p.default for p in pnl_cli.batch_run_cmd.params if p.name == "workers"))
    except Exception:  # noqa: BLE001 - an unreadable CLI falls back to the documented default
        return 2


# ---------------------------------------------------------------- state, floors, checks
async def reset(dsn: str) -> None:
    """Back to cold: no snapshots, no runs, no valuation marks, the starting equity; vacuumed
    (floor_snapshots stays). The marks go too: the history axis regenerates the prices."""
    await execute(dsn, "TRUNCATE portfolio_snapshots, batch_runs, valuation_marks")
    await execute(dsn, "UPDATE portfolios AS p SET equity_balance = s.equity_balance, equity_as_of = NULL"
                       " FROM bench_start AS s WHERE s.id = p.id"
                       " AND (p.equity_balance <> s.equity_balance OR p.equity_as_of IS NOT NULL)")
    await settle(dsn)


async def settle(dsn: str) -> None:
    await execute(dsn, "VACUUM ANALYZE portfolios")
    await execute(dsn, "VACUUM ANALYZE portfolio_snapshots")
    await execute(dsn, "VACUUM ANALYZE market_prices")
    await execute(dsn, "CHECKPOINT")


async def check_same_as_floor(dsn: str, label: str, day: date = DAY, equity: bool = True) -> dict:
    result = dict(await fetchrow(dsn, sql_file("compare"), day))
    result["equity_differing"] = 0
    if equity:
        eq = await fetchrow(dsn, "SELECT count(*) AS n FROM portfolios AS p JOIN floor_snapshots AS f"
                                 " ON f.portfolio_id = p.id AND f.snapshot_date = $1"
                                 " WHERE p.equity_balance <> f.net_asset_value", day)
        result["equity_differing"] = eq["n"]
    if result["differing"] or result["missing"] or result["equity_differing"]:
        raise SystemExit(f"{label}: the batch's numbers differ from the floor's on {day}: {result}")
    return result


async def partition_snapshots(dsn: str) -> None:
    """--partition-snapshots: portfolio_snapshots partitioned by month over the bench's dates
    (bench/partition_snapshots.sql), before any data."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(sql_file("partition_snapshots"))
            months = await conn.fetch(sql_file("partition_months"), DAY - timedelta(days=450), DAY + timedelta(days=60))
            for r in months:
                await conn.execute(r["ddl"])
    finally:
        await conn.close()


async def prepare(dsn: str, n: int, k: int, s: int, partitioned: bool = False) -> float:
    migrate.apply(dsn)
    if partitioned:
        await partition_snapshots(dsn)
    t0 = time.perf_counter()
    await execute(dsn, sql_file("generate"), n, s, DAY)
    await execute(dsn, sql_file("generate_positions"), n, k, s, DAY)
    await execute(dsn, "SELECT setval(pg_get_serial_sequence('portfolios', 'id'), $1)", n)
    await execute(dsn, "CREATE TABLE floor_snapshots (LIKE portfolio_snapshots INCLUDING ALL)")
    await execute(dsn, "CREATE TABLE bench_start AS SELECT id, equity_balance FROM portfolios")
    await execute(dsn, "VACUUM ANALYZE")
    return time.perf_counter() - t0


async def id_ranges(dsn: str, parts: int) -> list[tuple[int, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT min(id) AS lo, max(id) AS hi FROM"
                                " (SELECT id, ntile($1) OVER (ORDER BY id) AS part FROM portfolios) AS t"
                                " GROUP BY part ORDER BY part", parts)
        return [(r["lo"], r["hi"]) for r in rows]
    finally:
        await conn.close()


async def floor(dsn: str, ranges: list[tuple[int, int]], day: date = DAY, with_equity: bool = True) -> float:
    """The floor's two statements, one id range per connection, all at once (one range = the floor)."""
    await execute(dsn, "TRUNCATE floor_snapshots")
    conns = [await asyncpg.connect(dsn) for _ in ranges]
    try:
        for c in conns:
            await c.execute("SET statement_timeout = 0")

        async def one(conn: asyncpg.Connection, lo: int, hi: int) -> None:
            async with conn.transaction():
                await conn.execute(sql_file("floor"), day, lo, hi)
                if with_equity:
                    await conn.execute(sql_file("floor_equity"), day, lo, hi)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(c, lo, hi) for c, (lo, hi) in zip(conns, ranges, strict=True)))
        return time.perf_counter() - t0
    finally:
        for c in conns:
            await c.close()


WAL_COUNTERS = """
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS lsn, w.wal_records, w.wal_fpi,
       t.relname, sum(s.n_tup_ins)::bigint AS n_tup_ins, sum(s.n_tup_upd)::bigint AS n_tup_upd,
       sum(s.n_tup_hot_upd)::bigint AS n_tup_hot_upd
  FROM pg_stat_wal AS w
 CROSS JOIN (VALUES ('portfolio_snapshots'), ('floor_snapshots'), ('portfolios')) AS t(relname)
 CROSS JOIN LATERAL (SELECT t.relname::regclass AS relid     -- the table, and if partitioned its partitions
                      UNION SELECT p.relid FROM pg_partition_tree(t.relname::regclass) AS p) AS part
  JOIN pg_stat_user_tables AS s ON s.relid = part.relid
 GROUP BY w.wal_records, w.wal_fpi, t.relname
"""


async def counters(dsn: str) -> dict:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(WAL_COUNTERS)
        out: dict = {"lsn": rows[0]["lsn"], "wal_records": rows[0]["wal_records"], "wal_fpi": rows[0]["wal_fpi"]}
        for r in rows:
            out[r["relname"]] = (r["n_tup_ins"], r["n_tup_upd"], r["n_tup_hot_upd"])
        return out
    finally:
        await conn.close()


UQ_BLOCKS = """
SELECT COALESCE(sum(s.idx_blks_read), 0)::bigint AS read, COALESCE(sum(s.idx_blks_hit), 0)::bigint AS hit
  FROM (SELECT 'uq_portfolio_snapshot_date'::regclass AS relid   -- the index, and if partitioned its partitions
        UNION SELECT p.relid FROM pg_partition_tree('uq_portfolio_snapshot_date'::regclass) AS p) AS part
  JOIN pg_statio_user_indexes AS s ON s.indexrelid = part.relid"""


async def lsn_bytes(dsn: str, before: dict) -> int:
    """WAL bytes written since `before` (exact: the LSN moved)."""
    return (await counters(dsn))["lsn"] - before["lsn"]


async def wal_between(dsn: str, before: dict) -> dict:
    """WAL bytes since `before` (exact: LSN), and the stats counters' deltas.
    Statistics reach the shared counters when a backend exits or idles (<= 1 s): wait for them."""
    await asyncio.sleep(1.2)
    after = await counters(dsn)
    out = {"wal_bytes": after["lsn"] - before["lsn"], "wal_records": after["wal_records"] - before["wal_records"],
           "wal_fpi": after["wal_fpi"] - before["wal_fpi"]}
    for t in ("portfolio_snapshots", "floor_snapshots", "portfolios"):
        b, a = before.get(t, (0, 0, 0)), after.get(t, (0, 0, 0))
        out[t] = {"inserted": a[0] - b[0], "updated": a[1] - b[1], "hot_updated": a[2] - b[2]}
    return out


# ---------------------------------------------------------------- the sections
class Bench:
    def __init__(self, dsn: str, args: argparse.Namespace, log: Log) -> None:
        self.dsn, self.args, self.log, self.n = dsn, args, log, args.portfolios
        self.floors: Floors | None = None
        self.ranges: list[tuple[int, int]] = []
        self.chunk = "5000"

    @property
    def whole(self) -> tuple[int, int]:
        return self.ranges[0][0], self.ranges[-1][1]

    def measure_floors(self, day: date = DAY) -> tuple[Floors, dict, dict]:
        """Both floors from the current state: (times, WAL of the floor, WAL of the parallel floor)."""
        asyncio.run(reset(self.dsn))
        before = asyncio.run(counters(self.dsn))
        single = asyncio.run(floor(self.dsn, [self.whole], day))
        wal1 = asyncio.run(wal_between(self.dsn, before))
        asyncio.run(reset(self.dsn))          # the floor set equity: the same start for the parallel floor
        before = asyncio.run(counters(self.dsn))
        parallel = asyncio.run(floor(self.dsn, self.ranges, day))
        walp = asyncio.run(wal_between(self.dsn, before))
        return Floors(single, parallel, len(self.ranges)), wal1, walp

    def cold(self, label: str, *extra: str, goal: str | None = None, wal: bool = False) -> tuple[Row, dict | None]:
        asyncio.run(reset(self.dsn))
        before = asyncio.run(counters(self.dsn))
        wall, rss, out = run_pnl(self.dsn, "batch", "run", "--date", DAY.isoformat(), *extra)
        walb = asyncio.run(wal_between(self.dsn, before)) if wal else {"wal_bytes": asyncio.run(
            lsn_bytes(self.dsn, before))}
        asyncio.run(check_same_as_floor(self.dsn, label))
        self.log(f"  {label}: {wall:.2f}s")
        row = Row(label, wall, self.n, peak_rss_mb=rss, processed=out["processed"], skipped=out["already_done"],
                  wal_bytes_per_portfolio=round(walb["wal_bytes"] / self.n, 1))
        assert self.floors is not None
        return self.floors.rate(row, goal), (walb if wal else None)

    def processes(self, label: str, count: int, *extra: str, goal: str | None = None) -> Row:
        asyncio.run(reset(self.dsn))
        before = asyncio.run(counters(self.dsn))
        # --wait: a process that finishes while another still holds its last chunk
        # waits for it (exit 0) instead of exiting 75.
        wall, rss, outs = run_processes(self.dsn, count, "batch", "run", "--date", DAY.isoformat(), "--wait",
                                        *extra)
        walb = asyncio.run(lsn_bytes(self.dsn, before))
        asyncio.run(check_same_as_floor(self.dsn, label))
        processed = sum(o["processed"] for o in outs)
        if processed != self.n:
            raise SystemExit(f"{label}: {processed} portfolios processed in all, expected {self.n}")
        self.log(f"  {label}: {wall:.2f}s")
        assert self.floors is not None
        return self.floors.rate(Row(label, wall, self.n, peak_rss_mb=rss, processed=processed,
                                    wal_bytes_per_portfolio=round(walb / self.n, 1)), goal)

    def goals(self) -> dict:
        a, n = self.args, self.n
        self.floors, wal1, walp = self.measure_floors()
        f = self.floors
        rows = [
            f.rate(Row("floor (1 INSERT..SELECT + 1 UPDATE)", f.seconds, n,
                       wal_bytes_per_portfolio=round(wal1["wal_bytes"] / n, 1))),
            f.rate(Row(f"parallel floor ({f.connections} connections)", f.parallel_seconds, n,
                       wal_bytes_per_portfolio=round(walp["wal_bytes"] / n, 1))),
        ]
        self.log(f"  floor {f.seconds:.2f}s, parallel floor ({f.connections} connections) {f.parallel_seconds:.2f}s")
        curve = [self.cold(f"cold, chunk {size}", "--chunk-size", str(size))[0] for size in a.chunk_sizes]
        best = min(curve, key=lambda r: r.seconds)
        self.chunk = best.name.rsplit(" ", 1)[1]
        default, wal_default = self.cold(f"pnl batch run (cold, chunk {self.chunk})", "--chunk-size", self.chunk,
                                         goal="default", wal=True)
        one, wal_one = self.cold("pnl batch run --workers 1 (cold)", "--chunk-size", self.chunk, "--workers", "1",
                                 goal="workers1", wal=True)
        rows += [default, one]
        before = asyncio.run(counters(self.dsn))
        wall, rss, out = run_pnl(self.dsn, "batch", "run", "--date", DAY.isoformat(), "--chunk-size", self.chunk)
        walb = asyncio.run(lsn_bytes(self.dsn, before))
        if out["processed"] != 0 or out["already_done"] != n:
            raise SystemExit(f"re-run: expected every portfolio skipped, got {out}")
        rows.append(f.rate(Row("pnl batch run again (all skipped)", wall, n, peak_rss_mb=rss,
                               processed=out["processed"], skipped=out["already_done"],
                               wal_bytes_per_portfolio=round(walb / n, 1)), "rerun"))
        self.log(f"  re-run {wall:.2f}s")
        rows.append(self.processes(f"{a.workers} pnl processes at once (cold)", a.workers, "--chunk-size",
                                   self.chunk, goal="processes"))
        wal = [wal_row("floor (1 connection)", wal1, n, "floor_snapshots"),
               wal_row(f"parallel floor ({f.connections} connections)", walp, n, "floor_snapshots"),
               wal_row(default.name, wal_default or {}, n, "portfolio_snapshots"),
               wal_row(one.name, wal_one or {}, n, "portfolio_snapshots")]
        return {"floor_seconds": round(f.seconds, 3), "parallel_floor_seconds": round(f.parallel_seconds, 3),
                "parallel_floor_connections": f.connections, "chunk_size": int(self.chunk),
                "results": [r.to_json() for r in rows],
                "chunk_curve": [{"chunk_size": int(r.name.rsplit(" ", 1)[1]), "seconds": round(r.seconds, 3),
                                 "ratio": round(r.ratio or 0, 3)} for r in curve],
                "wal": wal}

    def scaling(self) -> list[dict]:
        rows = []
        for w in self.args.scaling:
            r, _ = self.cold(f"--workers {w}, 1 process", "--chunk-size", self.chunk, "--workers", str(w))
            rows.append({"kind": "workers", "count": w, **r.to_json()})
            if w > 1:
                p = self.processes(f"{w} processes x --workers 1", w, "--chunk-size", self.chunk, "--workers", "1")
                rows.append({"kind": "processes", "count": w, **p.to_json()})
        return rows

    def history(self) -> dict:
        a, n, dsn = self.args, self.n, self.dsn
        catch_up_dates = weekdays(DAY, CATCH_UP, 1)
        mode = "batch run" if has_catch_up(dsn) else "batch backfill"
        depths = []
        bytes_per_row = None
        deepest = n * (max(a.history) + 1 + CATCH_UP)
        self.log(f"history axis: up to {deepest:,} snapshot rows, about {deepest * 250 / 1e9:.0f} GB plus as much WAL"
                 f" (measured ~250 B/row at 100k x 250)")
        for depth in a.history:
            hist = weekdays(DAY, depth, -1)
            asyncio.run(reset(dsn))
            asyncio.run(execute(dsn, "DELETE FROM market_prices WHERE price_date NOT IN ($1::date - 1, $1::date)", DAY))
            t0 = time.perf_counter()
            asyncio.run(execute(dsn, sql_file("generate_prices"), [*hist, *catch_up_dates], a.symbols))
            asyncio.run(execute(dsn, sql_file("generate_history"), hist, a.positions, n))
            asyncio.run(settle(dsn))
            gen = time.perf_counter() - t0
            self.log(f"  history {depth}: {depth * n:,} complete snapshots over {hist[0]}..{hist[-1]}"
                     f" generated in {gen:.1f}s")
            floor_s = asyncio.run(floor(dsn, [self.whole]))
            asyncio.run(settle(dsn))
            rows_before = asyncio.run(fetchrow(dsn, "SELECT count(*) AS n FROM portfolio_snapshots"))["n"]
            wal0, uq0 = asyncio.run(counters(dsn)), asyncio.run(fetchrow(dsn, UQ_BLOCKS))
            one_s, _, out = run_pnl(dsn, "batch", "run", "--date", DAY.isoformat(), "--chunk-size", self.chunk)
            wal = asyncio.run(wal_between(dsn, wal0))
            uq1 = asyncio.run(fetchrow(dsn, UQ_BLOCKS))
            asyncio.run(check_same_as_floor(dsn, f"history {depth}: one date"))
            rows_after = asyncio.run(fetchrow(dsn, "SELECT count(*) AS n FROM portfolio_snapshots"))["n"]
            if rows_after - rows_before != n or out.get("processed", n) != n:
                raise SystemExit(f"history {depth}: the one-date run wrote {rows_after - rows_before} snapshots "
                                 f"(processed {out.get('processed')}), expected exactly {n}: one missing date")
            status_s, _, _ = run_pnl(dsn, "status", "--no-verify")
            verify_s, _, v = run_pnl(dsn, "verify")   # exits 1 (fails the bench) unless healthy
            if depth == max(a.history):
                r = asyncio.run(fetchrow(dsn, """
                    SELECT (SELECT count(*) FROM portfolio_snapshots) AS n_rows,
                           sum(pg_relation_size(t.relid))::bigint AS heap,
                           sum(pg_indexes_size(t.relid))::bigint AS idx,
                           sum(pg_total_relation_size(t.relid))::bigint AS total
                      FROM (SELECT 'portfolio_snapshots'::regclass AS relid   -- and its partitions, if any
                            UNION SELECT p.relid FROM pg_partition_tree('portfolio_snapshots') AS p) AS t"""))
                bytes_per_row = {"rows": r["n_rows"], "heap": round(r["heap"] / r["n_rows"], 1),
                                 "indexes": round(r["idx"] / r["n_rows"], 1),
                                 "total": round(r["total"] / r["n_rows"], 1), "at_depth": depth + 1}
            # The catch-up's missing-dates query on its own, for the 5 catch-up dates. Measured here, not
            # before the one-date run: it reads the same index leaves, and would warm them for that run.
            missing_s, owed = asyncio.run(missing_dates(dsn, catch_up_dates[-1], int(self.chunk)))
            if owed != n * CATCH_UP:
                raise SystemExit(f"history {depth}: the missing-dates query found {owed} owed slots,"
                                 f" expected {n * CATCH_UP}")
            asyncio.run(settle(dsn))
            args = (["batch", "run", "--date", catch_up_dates[-1].isoformat()] if mode == "batch run" else
                    ["batch", "backfill", "--from", catch_up_dates[0].isoformat(),
                     "--to", catch_up_dates[-1].isoformat()])
            catch_s, _, _ = run_pnl(dsn, *args, "--chunk-size", self.chunk)
            for day in catch_up_dates:   # each date against the floor's step from the batch's previous date
                asyncio.run(floor(dsn, [self.whole], day, with_equity=False))
                asyncio.run(check_same_as_floor(dsn, f"history {depth}: catch-up", day,
                                                equity=day == catch_up_dates[-1]))
            self.log(f"  history {depth}: floor {floor_s:.2f}s, missing dates {missing_s:.2f}s,"
                     f" one date {one_s:.2f}s, status {status_s:.2f}s,"
                     f" verify {verify_s:.2f}s, catch up {CATCH_UP} dates ({mode}) {catch_s:.2f}s")
            depths.append({"depth": depth, "generate_seconds": round(gen, 2), "floor_seconds": round(floor_s, 3),
                           "one_date_seconds": round(one_s, 3), "one_date_x_floor": round(one_s / floor_s, 3),
                           "status_seconds": round(status_s, 3), "verify_seconds": round(verify_s, 3),
                           "verify_healthy": v["healthy"], "missing_dates_query_seconds": round(missing_s, 3),
                           "catch_up_seconds": round(catch_s, 3),
                           "one_date_wal_bytes_per_portfolio": round(wal["wal_bytes"] / n, 1),
                           "one_date_wal_fpi": wal["wal_fpi"],
                           "one_date_uq_blocks_read": uq1["read"] - uq0["read"],
                           "one_date_uq_blocks_hit": uq1["hit"] - uq0["hit"],
                           "catch_up_per_one_date": round(catch_s / one_s, 3)})
        lo, hi = depths[0], depths[-1]
        flat = {key: round(hi[key] / lo[key], 3) for key in
                ("one_date_seconds", "status_seconds", "verify_seconds", "catch_up_seconds", "floor_seconds",
                 "missing_dates_query_seconds")}
        return {"catch_up_mode": mode, "catch_up_dates": [d.isoformat() for d in catch_up_dates],
                "depths": depths, "flatness": {"from": lo["depth"], "to": hi["depth"], **flat},
                "snapshot_bytes_per_row": bytes_per_row,
                "missing_dates_query": "sql/batch/claim_owed_dates.sql, plan only, over the whole book in"
                                       f" chunks, for the {CATCH_UP} catch-up dates, just before the catch-up"}


def wal_row(name: str, w: dict, n: int, table: str) -> dict:
    t = w.get(table, {})
    p = w.get("portfolios", {})
    return {"name": name, "wal_bytes": w.get("wal_bytes"),
            "wal_bytes_per_portfolio": round(w.get("wal_bytes", 0) / n, 1),
            "wal_records": w.get("wal_records"), "wal_fpi": w.get("wal_fpi"), "snapshot_table": table,
            "snapshots_inserted": t.get("inserted"), "snapshots_updated": t.get("updated"),
            "snapshots_hot_updated": t.get("hot_updated"), "portfolios_updated": p.get("updated"),
            "portfolios_hot_updated": p.get("hot_updated")}


def bench(dsn: str, args: argparse.Namespace) -> dict:
    n = args.portfolios
    log = Log(quiet=args.json)
    log(f"generating {n:,} portfolios x {args.positions} positions over {args.symbols:,} symbols ...")
    gen = asyncio.run(prepare(dsn, n, args.positions, args.symbols, args.partition_snapshots))
    log(f"  generated in {gen:.1f}s")
    b = Bench(dsn, args, log)
    b.ranges = asyncio.run(id_ranges(dsn, args.floor_connections or default_workers()))
    report: dict = {"portfolios": n, "positions": args.positions, "symbols": args.symbols, "date": DAY.isoformat(),
                    "snapshot_table": "partitioned by month" if args.partition_snapshots else "one table (migrations)",
                    "generate_seconds": round(gen, 2), "goals": {k: {"max_x": v[0], "vs": v[1]}
                                                                 for k, v in GOALS.items()}}
    report.update(b.goals())
    report["scaling"] = b.scaling() if args.scaling else []
    report["history"] = b.history() if args.history else None
    report["numbers_match_floor"] = True
    report["load_average"] = list(os.getloadavg())
    return report


# ---------------------------------------------------------------- output
def render(report: dict) -> None:
    print(f"\n{report['portfolios']:,} portfolios x {report['positions']} positions, {report['symbols']:,} symbols,"
          f" date {report['date']} (data generated in {report['generate_seconds']}s; load average at the end"
          f" {', '.join(f'{x:.2f}' for x in report['load_average'])})")
    print(f"portfolio_snapshots: {report.get('snapshot_table', 'one table (migrations)')}")
    print(f"the floor: 1 connection; the parallel floor: {report['parallel_floor_connections']} connections"
          f" (as many as `pnl batch run` uses by default)")
    head = f"{'':44} {'wall s':>8} {'portf/s':>9} {'x floor':>8} {'x par.fl':>8} {'WAL B/pf':>9} {'RSS MB':>7}"
    print(head + f"  {'goal':<16}")
    for r in report["results"]:
        print(_line(r) + (f"  {r['goal']:<16} {'PASS' if r['goal_met'] else 'FAIL'}" if r["goal"] else ""))
    print("chunk-size curve (cold runs):  " + "   ".join(
        f"{c['chunk_size']}: {c['seconds']:.2f}s ({c['ratio']:.2f}x)" for c in report["chunk_curve"]))
    print("\nWAL, floor vs batch (snapshots updated > 0 would mean a row written twice):")
    print(f"{'':44} {'WAL MB':>8} {'B/portf':>8} {'records':>10} {'FPI':>7} {'snap ins':>9} {'snap upd':>9}"
          f" {'(HOT)':>8} {'pf upd':>8} {'(HOT)':>8}")
    for w in report["wal"]:
        print(f"{w['name']:44} {w['wal_bytes'] / 1e6:8.1f} {w['wal_bytes_per_portfolio']:8.0f}"
              f" {w['wal_records']:>10,} {w['wal_fpi']:>7,} {w['snapshots_inserted']:>9,} {w['snapshots_updated']:>9,}"
              f" {w['snapshots_hot_updated']:>8,} {w['portfolios_updated']:>8,} {w['portfolios_hot_updated']:>8,}")
    if report["scaling"]:
        print("\nscaling (cold, one date; x floor = against the 1-connection floor):")
        print(head)
        for r in report["scaling"]:
            print(_line(r))
    h = report["history"]
    if h:
        print(f"\nhistory depth (prior price dates of complete snapshots; catch-up of {len(h['catch_up_dates'])}"
              f" dates by `pnl {h['catch_up_mode']}`):")
        print(f"{'depth':>6} {'gen s':>7} {'floor s':>8} {'missing s':>10} {'1 date s':>9} {'x floor':>8}"
              f" {'status s':>9} {'verify s':>9} {'catch-up s':>11} {'catch-up/1 date':>16}")
        for d in h["depths"]:
            missing = d.get("missing_dates_query_seconds")
            print(f"{d['depth']:>6} {d['generate_seconds']:7.1f} {d['floor_seconds']:8.2f}"
                  f" {(f'{missing:.2f}' if missing is not None else '-'):>10} {d['one_date_seconds']:9.2f}"
                  f" {d['one_date_x_floor']:8.2f} {d['status_seconds']:9.2f} {d['verify_seconds']:9.2f}"
                  f" {d['catch_up_seconds']:11.2f} {d['catch_up_per_one_date']:16.2f}")
        f = h["flatness"]
        print(f"flatness, depth {f['to']} / depth {f['from']}: one date {f['one_date_seconds']:.2f}x (goal <= 1.2x"
              f" {'PASS' if f['one_date_seconds'] <= 1.2 else 'FAIL'}), status {f['status_seconds']:.2f}x,"
              f" missing dates {f['missing_dates_query_seconds']:.2f}x,"
              f" verify {f['verify_seconds']:.2f}x, catch-up {f['catch_up_seconds']:.2f}x,"
              f" floor {f['floor_seconds']:.2f}x;"
              f" catch-up {len(h['catch_up_dates'])} dates / 1 date at depth {f['to']}:"
              f" {h['depths'][-1]['catch_up_per_one_date']:.2f}x (goal <= {len(h['catch_up_dates'])}x"
              f" {'PASS' if h['depths'][-1]['catch_up_per_one_date'] <= len(h['catch_up_dates']) else 'FAIL'})")
        print(f"missing s: the catch-up's missing-dates query, {h['missing_dates_query']}")
        print("the one-date run, physically: WAL B/portfolio, full-page images, blocks of uq_portfolio_snapshot_date"
              " read (not in shared_buffers) / hit")
        for d in h["depths"]:
            if "one_date_wal_fpi" in d:
                print(f"{d['depth']:>6} {d['one_date_wal_bytes_per_portfolio']:9.0f} {d['one_date_wal_fpi']:>10,}"
                      f" {d['one_date_uq_blocks_read']:>12,} {d['one_date_uq_blocks_hit']:>12,}")
        if h["snapshot_bytes_per_row"]:
            s = h["snapshot_bytes_per_row"]
            print(f"portfolio_snapshots at {s['rows']:,} rows: {s['heap']:.0f} B/row heap + {s['indexes']:.0f} B/row"
                  f" indexes = {s['total']:.0f} B/row")
    print("every variant wrote exactly the floor's numbers for every portfolio")


def _line(r: dict) -> str:
    rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "-"
    wal = f"{r['wal_bytes_per_portfolio']:.0f}" if r.get("wal_bytes_per_portfolio") is not None else "-"
    return (f"{r['name']:44} {r['seconds']:8.2f} {r['per_second']:9,.0f} {r['ratio']:8.2f}"
            f" {r['ratio_parallel']:8.2f} {wal:>9} {rss:>7}")


def int_list(text: str) -> list[int]:
    if text.strip().lower() in ("", "none", "0"):
        return []
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="20,000 portfolios, history 1,5, scaling 1,2,4, one chunk size: a couple of minutes")
    ap.add_argument("--portfolios", type=int)
    ap.add_argument("--positions", type=int, default=20)
    ap.add_argument("--symbols", type=int, default=5_000)
    ap.add_argument("--chunk-sizes", help="comma-separated chunk sizes to measure (default 1000,5000); "
                                          "the fastest is used for the other rows")
    ap.add_argument("--workers", type=int, default=4, help="processes at once in the goals table (default 4)")
    ap.add_argument("--floor-connections", type=int,
                    help="connections of the parallel floor (default: `pnl batch run`'s --workers default)")
    ap.add_argument("--history", help="history depths in prior price dates (default 1,20,250; 'none' skips)")
    ap.add_argument("--scaling", help="process/worker counts (default 1,2,4,8; 'none' skips)")
    ap.add_argument("--dsn", default=os.environ.get("PNL_BENCH_DSN"),
                    help="an existing server (a scratch database is created on it and dropped); better "
                         "PNL_BENCH_DSN, with the password in PGPASSFILE: argv is visible in `ps`")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database/server afterwards")
    ap.add_argument("--partition-snapshots", action="store_true",
                    help="measure on portfolio_snapshots partitioned by month (bench/partition_snapshots.sql;"
                         " docs/scaling.md section 2), pnl's statements unchanged")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    ap.add_argument("--save", type=Path, metavar="FILE", help="also write the JSON report to FILE")
    args = ap.parse_args()
    args.portfolios = args.portfolios or (20_000 if args.quick else 100_000)
    args.chunk_sizes = int_list(args.chunk_sizes or ("5000" if args.quick else "1000,5000"))
    args.history = sorted(set(int_list(args.history or ("1,5" if args.quick else "1,20,250"))))
    args.scaling = int_list(args.scaling or ("1,2,4" if args.quick else "1,2,4,8"))
    if not args.chunk_sizes or min(args.portfolios, args.positions, args.symbols, args.workers, *args.chunk_sizes,
                                   *args.history, *args.scaling, args.floor_connections or 1) < 1:
        ap.error("sizes must be positive")

    server = None
    if args.dsn:
        admin = args.dsn
    else:
        bindir, source = server_bindir()          # the machine's PostgreSQL, else the wheel's
        if not args.json:
            print(f"scratch server: {source} PostgreSQL ({bindir})", file=sys.stderr)
        server = LocalServer(data_dir=throwaway_dir("pnl-bench-"), port=free_port(), password="bench",
                             bindir=bindir)
        server.init()
        server.start(SERVER_SETTINGS)
        admin = server.dsn
    scratch = f"pnl_bench_{os.getpid()}"
    asyncio.run(execute(admin, f'CREATE DATABASE "{scratch}"'))
    dsn = admin.rsplit("/", 1)[0] + "/" + scratch
    try:
        report = bench(dsn, args)
    finally:
        if not args.keep:
            asyncio.run(execute(admin, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
            if server:
                server.stop()
                shutil.rmtree(server.data_dir, ignore_errors=True)
    if args.save:
        args.save.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        render(report)


if __name__ == "__main__":
    main()
