"""The batch: claim -> compute -> finalize, chunk by chunk, in portfolio-id order.

Every database write is one set-based statement from sql/batch/, over a whole
chunk of portfolios. The unique constraint uq_portfolio_snapshot_date is the
arbiter between concurrent runs; this module holds no state of its own between
runs, and the database is the only shared state.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import asyncpg

from pnl.errors import BadInput
from pnl.queries import sql

MAX_RECORDED_FAILURES = 100


@dataclass(frozen=True)
class BatchOptions:
    portfolio_ids: tuple[int, ...] | None = None
    chunk_size: int = 1000
    lease: timedelta = timedelta(minutes=15)
    # Test-only: seconds to sleep after claiming a chunk, before finalizing it
    # (lets tests kill or race a run while it holds claims).
    pause_after_claim_s: float = 0.0


@dataclass(frozen=True)
class Failure:
    portfolio_id: int
    reason: str


@dataclass
class RunResult:
    run_id: int
    date: date
    total: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    reclaimed: int = 0
    lost: int = 0
    failures: list[Failure] = field(default_factory=list)
    status: str = "running"
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "date": self.date.isoformat(),
            "status": self.status,
            "total": self.total,
            "processed": self.processed,
            "skipped": self.skipped,
            "failed": self.failed,
            "reclaimed": self.reclaimed,
            "lost": self.lost,
            "failures": [{"portfolio_id": f.portfolio_id, "reason": f.reason} for f in self.failures],
            "seconds": round(self.seconds, 3),
        }


ProgressFn = Callable[[int, int], None]


def _outcome(result: RunResult) -> str:
    if result.failed == 0:
        return "succeeded"
    return "partial" if result.processed else "failed"


async def _check_portfolios(conn: asyncpg.Connection, ids: tuple[int, ...] | None) -> None:
    if ids is None:
        return
    unknown = [r["id"] for r in await conn.fetch(sql("batch/find_unknown_portfolios"), list(ids))]
    if unknown:
        raise BadInput(f"unknown portfolio id(s): {', '.join(map(str, unknown))}")


async def _record(conn: asyncpg.Connection, r: RunResult, final: bool) -> None:
    counts = (r.processed, r.skipped, r.failed, r.reclaimed, r.lost)
    if final:
        failures = json.dumps(
            [{"portfolio_id": f.portfolio_id, "reason": f.reason} for f in r.failures[:MAX_RECORDED_FAILURES]]
        )
        await conn.execute(sql("runs/finish_run"), r.run_id, r.status, *counts, failures)
    else:
        await conn.execute(sql("runs/record_progress"), r.run_id, *counts)


async def _process_chunk(
    conn: asyncpg.Connection, result: RunResult, day: date, ids: list[int], opts: BatchOptions
) -> None:
    run_id = result.run_id
    taken = await conn.fetch(sql("batch/take_over_expired_claims"), run_id, day, ids, opts.lease)
    claim = await conn.fetchrow(sql("batch/claim_slots"), run_id, day, ids, opts.lease)
    reclaimed = {r["portfolio_id"] for r in taken}
    owned = sorted(reclaimed | set(claim["claimed_ids"]))
    for pid, later in zip(claim["blocked_ids"], claim["blocked_dates"], strict=False):
        result.failures.append(
            Failure(pid, f"has a complete snapshot on {later.isoformat()}, after {day.isoformat()}: "
                         "processing an earlier date now would break its equity chain")
        )
    result.failed += len(claim["blocked_ids"])
    result.reclaimed += len(reclaimed)
    result.skipped += len(ids) - len(owned) - len(claim["blocked_ids"])
    if not owned:
        return
    if opts.pause_after_claim_s:
        await asyncio.sleep(opts.pause_after_claim_s)
    try:
        row = await conn.fetchrow(sql("batch/finalize_claimed"), run_id, day, owned)
    except asyncpg.PostgresError as exc:
        # The statement rolled back as a whole: nothing of this chunk was
        # written. Give its claims back so the next run need not wait.
        await conn.fetch(sql("batch/release_claims"), run_id, day, owned)
        reason = f"chunk failed, claims released: {str(exc).splitlines()[0]}"
        result.failures.extend(Failure(pid, reason) for pid in owned)
        result.failed += len(owned)
        return
    finalized = row["finalized_ids"]
    result.processed += len(finalized)
    for pid, symbols in zip(row["failed_ids"], row["failed_symbols"], strict=False):
        result.failures.append(
            Failure(pid, f"no close price on or before {day.isoformat()} for {symbols}; claim released")
        )
    result.failed += len(row["failed_ids"])
    result.lost += len(owned) - len(finalized) - len(row["failed_ids"])


async def run_batch(
    pool: asyncpg.Pool,
    day: date,
    opts: BatchOptions = BatchOptions(),
    on_progress: ProgressFn | None = None,
) -> RunResult:
    """Run the batch for one date over all (or the given) portfolios."""
    started = time.monotonic()
    async with pool.acquire() as conn:
        await _check_portfolios(conn, opts.portfolio_ids)
        filter_ids = list(opts.portfolio_ids) if opts.portfolio_ids is not None else None
        total = await conn.fetchval(sql("batch/count_portfolios"), filter_ids)
        run = await conn.fetchrow(sql("runs/start_run"), day, socket.gethostname(), os.getpid())
        result = RunResult(run_id=run["id"], date=day, total=total)
        done, last_id = 0, 0
        try:
            while True:
                ids = [r["id"] for r in await conn.fetch(
                    sql("batch/list_portfolio_chunk"), last_id, filter_ids, opts.chunk_size)]
                if not ids:
                    break
                last_id = ids[-1]
                await _process_chunk(conn, result, day, ids, opts)
                await _record(conn, result, final=False)
                done += len(ids)
                if on_progress:
                    on_progress(done, total)
        except BaseException:
            result.status = "failed"
            result.seconds = time.monotonic() - started
            try:
                await _record(conn, result, final=True)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pass
            raise
        result.status = _outcome(result)
        result.seconds = time.monotonic() - started
        await _record(conn, result, final=True)
    return result


async def price_dates(pool: asyncpg.Pool, first: date, last: date) -> list[date]:
    async with pool.acquire() as conn:
        return [r["price_date"] for r in await conn.fetch(sql("batch/list_price_dates"), first, last)]


async def backfill(
    pool: asyncpg.Pool,
    first: date,
    last: date,
    opts: BatchOptions = BatchOptions(),
    on_date: Callable[[RunResult], None] | None = None,
) -> tuple[list[RunResult], date | None]:
    """Run every date in [first, last] that has prices, in order.

    Stops after the first date on which a portfolio failed (running later dates
    first would leave that date unfillable); returns the runs and that date.
    """
    results: list[RunResult] = []
    for day in await price_dates(pool, first, last):
        result = await run_batch(pool, day, opts)
        results.append(result)
        if on_date:
            on_date(result)
        if result.failed:
            return results, day
    return results, None
