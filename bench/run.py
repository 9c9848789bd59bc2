#!/usr/bin/env python3
"""Benchmark: the safe batch against the unsafe one-statement floor, side by side.

    python bench/run.py                         # 100,000 portfolios x 20 positions, 5,000 symbols
    python bench/run.py --portfolios 1000000    # the 1M run
    python bench/run.py --chunk-sizes 250,1000,5000,20000   # the chunk-size curve
    PNL_BENCH_DSN=postgresql://... python bench/run.py   # an existing server (a scratch database is made)

Against a scratch database it makes itself (by default on a throwaway local
PostgreSQL server, root-safe, like the tests), it generates the data, then
measures in one run:
  floor        one INSERT ... SELECT computing every snapshot + one UPDATE of equity
  cold         `pnl batch run` for the date, every portfolio processed (its
               default --workers 2), and the same with --workers 1
  re-run       the same command again, every portfolio skipped
  workers=4    `pnl batch run --workers 4`, from cold
  4 processes  four `pnl batch run` processes at once, from cold
and prints wall seconds, portfolios per second, the ratio to the floor and the
peak RSS of the pnl process. Every cold variant's rows are compared with the
floor's, column by column: any difference fails the benchmark (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pnl import migrate  # noqa: E402
from pnl.embedded import server_bindir  # noqa: E402
from pnl.localpg import LocalServer, free_port, throwaway_dir  # noqa: E402

DAY = date(2026, 11, 27)
SERVER_SETTINGS = {"shared_buffers": "2GB", "work_mem": "64MB", "maintenance_work_mem": "1GB",
                   "max_wal_size": "16GB", "checkpoint_timeout": "30min"}


@dataclass
class Row:
    name: str
    seconds: float
    portfolios: int
    ratio: float | None = None
    peak_rss_mb: float | None = None
    processed: int | None = None
    skipped: int | None = None

    @property
    def per_second(self) -> float:
        return self.portfolios / self.seconds if self.seconds else 0.0


def sql_file(name: str) -> str:
    return (ROOT / "bench" / f"{name}.sql").read_text()


async def execute(dsn: str, query: str, *args: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(query, *args) if not args else await conn.fetch(query, *args)
    finally:
        await conn.close()


async def fetchrow(dsn: str, query: str, *args: object) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()


def pnl_process(dsn: str, *args: str) -> subprocess.Popen:
    """`pnl ARGS --json` as a process. The DSN (with its password) goes through
    the environment, never the command line, which every user can read in `ps`."""
    cmd = [sys.executable, str(ROOT / "cli.py"), "--statement-timeout", "30m", *args, "--json"]
    env = {**os.environ, "DATABASE_URL": dsn}
    env.pop("PNL_EMBEDDED", None)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)


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


async def reset(dsn: str) -> None:
    """Back to cold: no snapshots, no runs, the starting equity; vacuumed."""
    await execute(dsn, "TRUNCATE portfolio_snapshots, batch_runs")
    await execute(dsn, "UPDATE portfolios AS p SET equity_balance = s.equity_balance"
                       " FROM bench_start AS s WHERE s.id = p.id AND p.equity_balance <> s.equity_balance")
    await execute(dsn, "VACUUM ANALYZE portfolios")
    await execute(dsn, "VACUUM ANALYZE portfolio_snapshots")
    await execute(dsn, "CHECKPOINT")


async def check_same_as_floor(dsn: str, label: str) -> dict:
    r = await fetchrow(dsn, sql_file("compare"), DAY)
    result = dict(r)
    eq = await fetchrow(dsn, "SELECT count(*) AS n FROM portfolios AS p JOIN floor_snapshots AS f"
                             " ON f.portfolio_id = p.id WHERE p.equity_balance <> f.net_asset_value")
    result["equity_differing"] = eq["n"]
    if result["differing"] or result["missing"] or result["equity_differing"]:
        raise SystemExit(f"{label}: the batch's numbers differ from the floor's: {result}")
    return result


async def prepare(dsn: str, n: int, k: int, s: int) -> float:
    migrate.apply(dsn)
    t0 = time.perf_counter()
    await execute(dsn, sql_file("generate"), n, s, DAY)
    await execute(dsn, sql_file("generate_positions"), n, k, s, DAY)
    await execute(dsn, "SELECT setval(pg_get_serial_sequence('portfolios', 'id'), $1)", n)
    await execute(dsn, "CREATE TABLE floor_snapshots (LIKE portfolio_snapshots INCLUDING ALL)")
    await execute(dsn, "CREATE TABLE bench_start AS SELECT id, equity_balance FROM portfolios")
    await execute(dsn, "VACUUM ANALYZE")
    return time.perf_counter() - t0


async def floor(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET statement_timeout = 0")
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.execute(sql_file("floor"), DAY)
            await conn.execute(sql_file("floor_equity"), DAY)
        return time.perf_counter() - t0
    finally:
        await conn.close()


def bench(dsn: str, args: argparse.Namespace) -> dict:
    n = args.portfolios
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    log(f"generating {n:,} portfolios x {args.positions} positions over {args.symbols:,} symbols ...")
    gen = asyncio.run(prepare(dsn, n, args.positions, args.symbols))
    log(f"  generated in {gen:.1f}s")
    rows: list[Row] = []

    asyncio.run(reset(dsn))
    floor_s = asyncio.run(floor(dsn))
    rows.append(Row("floor (1 INSERT..SELECT + 1 UPDATE)", floor_s, n, 1.0))
    log(f"  floor {floor_s:.2f}s")

    def cold(label: str, *extra: str) -> Row:
        asyncio.run(reset(dsn))
        wall, rss, out = run_pnl(dsn, "batch", "run", "--date", DAY.isoformat(), *extra)
        asyncio.run(check_same_as_floor(dsn, label))
        log(f"  {label}: {wall:.2f}s")
        return Row(label, wall, n, wall / floor_s, rss, out["processed"], out["already_done"])

    curve = []
    for size in args.chunk_sizes:
        r = cold(f"cold, chunk {size}", "--chunk-size", str(size))
        curve.append(r)
    best = min(curve, key=lambda r: r.seconds)
    chunk = best.name.rsplit(" ", 1)[1]
    rows.append(cold(f"pnl batch run (cold, chunk {chunk})", "--chunk-size", chunk))
    rows.append(cold("pnl batch run --workers 1 (cold)", "--chunk-size", chunk, "--workers", "1"))
    wall, rss, out = run_pnl(dsn, "batch", "run", "--date", DAY.isoformat(), "--chunk-size", chunk)
    rows.append(Row("pnl batch run again (all skipped)", wall, n, wall / floor_s, rss, out["processed"],
                    out["already_done"]))
    log(f"  re-run {wall:.2f}s")
    rows.append(cold(f"pnl batch run --workers {args.workers} (cold)", "--chunk-size", chunk,
                     "--workers", str(args.workers)))
    asyncio.run(reset(dsn))
    # --wait: a process that finishes while another still holds its last chunk
    # waits for it (exit 0) instead of exiting 75.
    wall, rss, outs = run_processes(dsn, args.workers, "batch", "run", "--date", DAY.isoformat(),
                                    "--chunk-size", chunk, "--wait")
    asyncio.run(check_same_as_floor(dsn, "processes"))
    rows.append(Row(f"{args.workers} pnl processes at once (cold)", wall, n, wall / floor_s, rss,
                    sum(o["processed"] for o in outs), None))
    log(f"  {args.workers} processes {wall:.2f}s")
    return {
        "portfolios": n, "positions": args.positions, "symbols": args.symbols, "date": DAY.isoformat(),
        "generate_seconds": round(gen, 2), "chunk_size": int(chunk),
        "results": [{**asdict(r), "per_second": round(r.per_second, 1)} for r in rows],
        "chunk_curve": [{"chunk_size": int(r.name.rsplit(" ", 1)[1]), "seconds": round(r.seconds, 3),
                         "ratio": round(r.seconds / floor_s, 3)} for r in curve],
        "numbers_match_floor": True,
    }


def render(report: dict) -> None:
    print(f"\n{report['portfolios']:,} portfolios x {report['positions']} positions, {report['symbols']:,} symbols,"
          f" date {report['date']} (data generated in {report['generate_seconds']}s)")
    print(f"{'':44} {'wall s':>9} {'portf/s':>11} {'x floor':>8} {'peak RSS MB':>12}")
    for r in report["results"]:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "-"
        print(f"{r['name']:44} {r['seconds']:9.2f} {r['per_second']:11,.0f} {ratio:>8} {rss:>12}")
    print("chunk-size curve (cold runs):  " + "   ".join(
        f"{c['chunk_size']}: {c['seconds']:.2f}s ({c['ratio']:.2f}x)" for c in report["chunk_curve"]))
    print("every cold variant wrote exactly the floor's numbers for every portfolio")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portfolios", type=int, default=100_000)
    ap.add_argument("--positions", type=int, default=20)
    ap.add_argument("--symbols", type=int, default=5_000)
    ap.add_argument("--chunk-sizes", default="1000,5000",
                    help="comma-separated chunk sizes to measure; the fastest is used for the other rows")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--dsn", default=os.environ.get("PNL_BENCH_DSN"),
                    help="an existing server (a scratch database is created on it and dropped); better "
                         "PNL_BENCH_DSN, with the password in PGPASSFILE: argv is visible in `ps`")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database/server afterwards")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    args.chunk_sizes = [int(x) for x in args.chunk_sizes.split(",") if x.strip()]
    if min(args.portfolios, args.positions, args.symbols, *args.chunk_sizes) < 1:
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
    if args.json:
        print(json.dumps(report))
    else:
        render(report)


if __name__ == "__main__":
    main()
