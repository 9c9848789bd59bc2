"""The batch: claim -> compute -> finalize, chunk by chunk, in portfolio-id order.

Every database write is one set-based statement from sql/batch/, over a whole
chunk of portfolios. The unique constraint uq_portfolio_snapshot_date is the
arbiter between concurrent runs; this module holds no state of its own between
runs, and the database is the only shared state.

Crash safety: a chunk's claims carry a lease; a run that dies is taken over
when the lease expires; every finalize is fenced on batch_run_id, so a run
that lost its claim writes nothing. A database fault fails only the chunk in
flight (its single finalize statement rolled back whole) and its claims are
released. A stop request (SIGTERM/SIGINT in the CLI) lets the chunk in flight
finish, then the run records itself as 'interrupted'.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta

import asyncpg

from pnl.db import first_line, scrub
from pnl.errors import BadInput, DatabaseUnavailable
from pnl.queries import sql

MAX_RECORDED_FAILURES = 100      # kept in batch_runs.failures
MAX_REPORTED_FAILURES = 1000     # kept in memory and in --json: memory stays flat however many fail

# Faults that fail one chunk but not the run: the connection broke, the server
# cancelled a statement (statement_timeout, lock_timeout, admin), and so on.
DB_FAULTS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@dataclass(frozen=True)
class BatchOptions:
    portfolio_ids: tuple[int, ...] | None = None
    chunk_size: int = 5000
    lease: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class Failure:
    portfolio_id: int
    reason: str


@dataclass(frozen=True)
class Claim:
    """What claiming one chunk gave this run."""

    owned: list[int]                   # claimed now or taken over: ours to finalize
    reclaimed: int                     # of which taken over from a run whose lease expired
    blocked: list[Failure]             # not claimed: a later complete snapshot exists


@dataclass(frozen=True)
class Finalized:
    done: list[int]
    failed: list[Failure]
    lost: list[int]                    # owned, but another run took the claim over


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

    def note_failures(self, failures: Iterable[Failure]) -> None:
        """Count failures; keep the first MAX_REPORTED_FAILURES of them."""
        for f in failures:
            self.failed += 1
            if len(self.failures) < MAX_REPORTED_FAILURES:
                self.failures.append(f)

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
            "failures_truncated": self.failed > len(self.failures),
            "seconds": round(self.seconds, 3),
        }


ProgressFn = Callable[[int, int], None]


# ---------------------------------------------------------------- one chunk, step by step
async def claim_chunk(conn: asyncpg.Connection, run_id: int, day: date, ids: list[int],
                      lease: timedelta) -> Claim:
    """Take over expired claims, then claim free slots (two short statements)."""
    taken = await conn.fetch(sql("batch/take_over_expired_claims"), run_id, day, ids, lease)
    row = await conn.fetchrow(sql("batch/claim_slots"), run_id, day, ids, lease)
    reclaimed = {r["portfolio_id"] for r in taken}
    blocked = [
        Failure(pid, f"has a complete snapshot on {later.isoformat()}, after {day.isoformat()}: "
                     "processing an earlier date now would break its equity chain")
        for pid, later in zip(row["blocked_ids"], row["blocked_dates"], strict=True)
    ]
    return Claim(sorted(reclaimed | set(row["claimed_ids"])), len(reclaimed), blocked)


async def renew_leases(conn: asyncpg.Connection, run_id: int, day: date, ids: list[int],
                       lease: timedelta) -> list[int]:
    """Extend our unfinished claims that no statement is writing right now;
    returns the ones renewed."""
    return sorted(r["portfolio_id"] for r in await conn.fetch(sql("batch/renew_leases"), run_id, day, ids, lease))


@asynccontextmanager
async def lease_heartbeat(pool: asyncpg.Pool, run_id: int, day: date, ids: list[int],
                          lease: timedelta) -> AsyncIterator[None]:
    """While the body runs (the chunk's finalize statement, however slow), renew
    the chunk's leases every third of the lease, on a connection of its own, so
    a live run's claims never expire under it. A claim another run took over
    is not renewed (the renewal is fenced like finalize); a renewal that fails
    is tried again at the next beat."""
    every = lease.total_seconds() / 3

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                async with pool.acquire() as conn:
                    await renew_leases(conn, run_id, day, ids, lease)
            except DB_FAULTS:
                pass

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


FAILURE_REASONS = {
    "missing_price": "no close price on or before {day} for {detail}; claim released",
    "later_snapshot": "has a complete snapshot on {detail}, after {day}: finishing {day} now would break "
                      "its equity chain; claim released",
    "earlier_unfinished": "its snapshot for {detail} (before {day}) is claimed but unfinished; "
                          "claim released: run {day} again once {detail} is done",
}


async def finalize_chunk(conn: asyncpg.Connection, run_id: int, day: date, owned: list[int]) -> Finalized:
    """Compute and finalize, fenced on run_id, in one short transaction: lock the
    portfolios (id order), then one statement writes snapshots and equity."""
    async with conn.transaction():
        await conn.execute(sql("batch/plan_chunk_statements"))
        await conn.fetch(sql("batch/lock_portfolios"), owned)
        row = await conn.fetchrow(sql("batch/finalize_claimed"), run_id, day, owned)
    failed = [
        Failure(pid, FAILURE_REASONS[kind].format(day=day.isoformat(), detail=detail))
        for pid, kind, detail in zip(row["failed_ids"], row["failed_kinds"], row["failed_details"], strict=True)
    ]
    settled = set(row["finalized_ids"]) | set(row["failed_ids"])
    return Finalized(list(row["finalized_ids"]), failed, [p for p in owned if p not in settled])


async def release_claims(conn: asyncpg.Connection, run_id: int, day: date, ids: list[int]) -> list[int]:
    """Delete this run's unfinished claims among ids (never anyone else's)."""
    return [r["portfolio_id"] for r in await conn.fetch(sql("batch/release_claims"), run_id, day, ids)]


# ---------------------------------------------------------------- a whole run
def _outcome(result: RunResult) -> str:
    if result.failed == 0:
        return "succeeded"
    return "partial" if result.processed else "failed"


def _first_line(exc: BaseException) -> str:
    """The message kept in failures and batch_runs: one line, no credentials."""
    return scrub(first_line(exc))


async def _process_chunk(pool: asyncpg.Pool, result: RunResult, day: date, ids: list[int],
                         opts: BatchOptions) -> None:
    run_id = result.run_id
    owned: list[int] = []
    try:
        async with pool.acquire() as conn:
            claim = await claim_chunk(conn, run_id, day, ids, opts.lease)
            result.reclaimed += claim.reclaimed
            result.note_failures(claim.blocked)
            result.skipped += len(ids) - len(claim.owned) - len(claim.blocked)
            if not claim.owned:
                return
            owned = claim.owned
            async with lease_heartbeat(pool, run_id, day, owned, opts.lease):
                fin = await finalize_chunk(conn, run_id, day, owned)
    except DB_FAULTS as exc:
        # The finalize statement is atomic: nothing of this chunk was written.
        # Give back whatever this run still holds of it, on a fresh connection.
        # (A fault while claiming leaves us unsure which we own: report the chunk.)
        owned_ids = owned or ids
        try:
            async with pool.acquire() as conn:
                await release_claims(conn, run_id, day, ids)
            note = "claims released"
        except DB_FAULTS:
            note = "claims left to expire with their lease"
        reason = f"chunk failed ({_first_line(exc)}); {note}"
        result.note_failures(Failure(pid, reason) for pid in owned_ids)
        return
    result.processed += len(fin.done)
    result.note_failures(fin.failed)
    result.lost += len(fin.lost)


async def _record(pool: asyncpg.Pool, r: RunResult, final: bool) -> None:
    counts = (r.processed, r.skipped, r.failed, r.reclaimed, r.lost)
    async with pool.acquire() as conn:
        if final:
            failures = json.dumps(
                [{"portfolio_id": f.portfolio_id, "reason": f.reason} for f in r.failures[:MAX_RECORDED_FAILURES]]
            )
            await conn.execute(sql("runs/finish_run"), r.run_id, r.status, *counts, failures)
        else:
            await conn.execute(sql("runs/record_progress"), r.run_id, *counts)


async def _start(pool: asyncpg.Pool, day: date, opts: BatchOptions) -> tuple[RunResult, list[int] | None]:
    async with pool.acquire() as conn:
        filter_ids = list(opts.portfolio_ids) if opts.portfolio_ids is not None else None
        if filter_ids is not None:
            unknown = [r["id"] for r in await conn.fetch(sql("batch/find_unknown_portfolios"), filter_ids)]
            if unknown:
                raise BadInput(f"unknown portfolio id(s): {', '.join(map(str, unknown))}")
        total = await conn.fetchval(sql("batch/count_portfolios"), filter_ids)
        run = await conn.fetchrow(sql("runs/start_run"), day, socket.gethostname(), os.getpid())
    return RunResult(run_id=run["id"], date=day, total=total), filter_ids


class _Chunks:
    """Hands out the run's chunks in portfolio-id order (keyset pagination),
    one at a time, to however many workers share the run."""

    def __init__(self, pool: asyncpg.Pool, filter_ids: list[int] | None, size: int, run_id: int) -> None:
        self.pool, self.filter_ids, self.size, self.run_id = pool, filter_ids, size, run_id
        self.last_id = 0
        self.lock = asyncio.Lock()

    async def next(self) -> list[int]:
        async with self.lock:
            try:
                async with self.pool.acquire() as conn:
                    ids = [r["id"] for r in await conn.fetch(
                        sql("batch/list_portfolio_chunk"), self.last_id, self.filter_ids, self.size)]
            except DB_FAULTS as exc:
                raise DatabaseUnavailable(f"lost the database mid-run (run #{self.run_id}): {_first_line(exc)}; "
                                          "unfinished claims expire with their lease") from None
            if ids:
                self.last_id = ids[-1]
            return ids


async def run_batch(
    pool: asyncpg.Pool,
    day: date,
    opts: BatchOptions = BatchOptions(),
    on_progress: ProgressFn | None = None,
    stop: asyncio.Event | None = None,
    workers: int = 1,
) -> RunResult:
    """Run the batch for one date over all (or the given) portfolios.

    `workers` chunks are in flight at once, each on its own connection (the
    pool needs workers + 1 connections). `stop`, once set, ends the run after
    the chunks in flight ('interrupted').
    """
    started = time.monotonic()
    result, filter_ids = await _start(pool, day, opts)
    chunks = _Chunks(pool, filter_ids, opts.chunk_size, result.run_id)
    done = 0

    async def worker() -> None:
        nonlocal done
        while not (stop and stop.is_set()):
            ids = await chunks.next()
            if not ids:
                return
            await _process_chunk(pool, result, day, ids, opts)
            done += len(ids)
            try:
                await _record(pool, result, final=False)
            except DB_FAULTS:
                pass  # progress is informational; the next chunk will say whether the database is gone
            if on_progress:
                on_progress(done, result.total)

    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
        result.status = "interrupted" if stop and stop.is_set() else _outcome(result)
    except BaseException:
        result.status = "interrupted" if stop and stop.is_set() else "failed"
        result.seconds = time.monotonic() - started
        try:
            await asyncio.shield(_record(pool, result, final=True))
        except BaseException:  # best effort: the run is already failing
            pass
        raise
    result.seconds = time.monotonic() - started
    await _record(pool, result, final=True)
    return result


async def price_dates(pool: asyncpg.Pool, first: date, last: date) -> list[date]:
    async with pool.acquire() as conn:
        return [r["price_date"] for r in await conn.fetch(sql("batch/list_price_dates"), first, last)]


async def backfill(
    pool: asyncpg.Pool,
    first: date,
    last: date,
    opts: BatchOptions = BatchOptions(),
    on_date: Callable[[RunResult, int, int], None] | None = None,
    stop: asyncio.Event | None = None,
    workers: int = 1,
) -> tuple[list[RunResult], date | None]:
    """Run every date in [first, last] that has prices, in order; on_date(result,
    dates done, dates in all) after each.

    Stops after the first date on which a portfolio failed (running later dates
    first would leave that date unfillable), or when `stop` is set; returns the
    runs and the date it stopped at.
    """
    results: list[RunResult] = []
    days = await price_dates(pool, first, last)
    for day in days:
        if stop and stop.is_set():
            return results, day
        result = await run_batch(pool, day, opts, stop=stop, workers=workers)
        results.append(result)
        if on_date:
            on_date(result, len(results), len(days))
        if result.failed or result.status == "interrupted":
            return results, day
    return results, None
