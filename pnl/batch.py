"""The batch: claim and compute, chunk by chunk, in portfolio-id order, and for
each chunk date by date: the gap-free chain.

A run up to date D computes, for every selected portfolio, each price date
after its latest complete snapshot up to D, in date order (the catch-up); a
portfolio without a snapshot starts at the run's start date (D for `batch run`,
--from for a backfill). One statement per chunk finds each portfolio's owed
dates (sql/batch/claim_owed_dates.sql, plan only); then, date by date, one
statement inserts every free slot complete (sql/batch/insert_complete.sql:
the claim and the result are one row, written once). What that leaves (a slot
another run holds, a portfolio not computable now, a failed statement) takes
the two-step protocol: claim (claim_owed_dates.sql, claiming), then finalize
each date in order (finalize_claimed.sql). A late, skipped or failed day is
therefore filled by the next run, and runs that overlap cooperate through the
unique key, the portfolio row locks and the claims.

Prices: before anything is written, the run checks every date it may cover
(sql/batch/check_run_prices.sql): the first date on which more held symbols than
--max-stale have no close (they would be carried forward) is refused with every
later date (StalePrices when that is the first date: nothing written, exit 75).
Then, once per run and date, before any chunk, sql/batch/fix_marks.sql fixes
the date's valuation marks (INSERT ... ON CONFLICT DO NOTHING): every run of a
date values with the same closes, and the next date starts from them.

Every database write is one set-based statement from sql/batch/, over a whole
chunk of portfolios. The unique constraint uq_portfolio_snapshot_date is the
arbiter between concurrent runs; this module holds no state of its own between
runs, and the database is the only shared state.

Outcome: every (selected portfolio, covered date) ends in exactly one bucket:
processed, already_done, before_chain, held (another live run owns it),
failed, lost (another run took our claim over). Slots held by other runs are
looked at again at the end (and, with `wait`, until they are done or our lease
has passed), so the result says what is true when the run ends.

Crash safety: the one-write statement is one transaction (a run killed inside
it leaves nothing); claims carry a lease; a run that dies is taken over when the
lease expires; every finalize is fenced on batch_run_id, so a run that lost its
claim writes nothing. A database fault fails only the chunk in flight and its
claims are released. A data error (an overflow, a check violation, a division
by zero) in some portfolios fails only those: the chunk's date is split in
halves until they are isolated (finalize_isolating). A lost server (restart,
shutdown, reset) fails the chunks in flight; the run waits for the server
(bounded: BatchOptions.reconnect) and goes on; if it stays away the run ends,
recording its outcome as soon as the server answers again. A stop request
(SIGTERM/SIGINT in the CLI) lets the chunk in flight finish, then the run
records itself as 'interrupted'.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import asyncpg

from pnl.calendar import DayRequest, resolve_range, resolve_run_date
from pnl.db import first_line, is_connection_fault, is_data_error, planned_transaction, scrub
from pnl.errors import BadInput, RetryLater
from pnl.queries import sql

MAX_RECORDED_FAILURES = 100      # kept in batch_runs.failures
MAX_REPORTED_FAILURES = 1000     # kept in memory and in --json: memory stays flat however many fail
WAIT_POLL_S = (0.05, 1.0)        # --wait: held claims are looked at again after 50 ms, doubling up to 1 s
RECONNECT_PAUSE_S = (0.25, 5.0)  # a lost server is tried again after 250 ms, doubling up to 5 s
STEP_RECONNECTS = 3              # a step of the run is tried again after at most this many reconnects
MAX_REASON_DETAIL = 200          # characters of a database error's DETAIL kept in a failure reason
PROGRESS_EVERY_S = 1.0           # the main pass records progress (the heartbeat) at most this often, and at
                                 # least every third of the lease: a chunk done in 20 ms need not write a row
GOLDEN_RATIO = 0.6180339887498949   # which chunk a run walks first: see starting_chunk

log = logging.getLogger("pnl.batch")

# Faults that fail one chunk but not the run: the connection broke, the server
# cancelled a statement (statement_timeout, lock_timeout, admin), and so on.
# InternalClientError: asyncpg's state machine after the server vanished mid-statement.
DB_FAULTS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError,
                                              asyncpg.InternalClientError, OSError)

BUCKETS = ("processed", "already_done", "before_chain", "held", "failed", "lost")


MAX_STALE_NAMES = 20             # stale symbols named per date (all are counted)


@dataclass(frozen=True)
class StaleLimit:
    """--max-stale: how many of a date's held symbols may have no close on it
    (carried forward) before the run refuses the date: a count of symbols, or
    a fraction of the held ones."""

    count: int | None = None
    fraction: Decimal | None = None

    @classmethod
    def parse(cls, text: str) -> StaleLimit:
        """`10` (symbols, 0 to 1e9), `0.05` (a fraction, 0 to 1) or `5%`; ValueError (saying
        what is wrong, without the text) otherwise."""
        raw = str(text).strip()
        if re.fullmatch(r"[0-9]{1,10}", raw):
            if int(raw) > 10**9:
                raise ValueError("out of range: a count of symbols is at most 1000000000")
            return cls(count=int(raw))
        m = re.fullmatch(r"([0-9]{0,3}(?:\.[0-9]{1,12})?)(%?)", raw)
        if not m or not m.group(1) or m.group(1) == ".":
            raise ValueError("not a count of symbols (10), a fraction (0.05) or a percentage (5%)")
        value = Decimal(m.group(1)) / (100 if m.group(2) else 1)
        if not 0 <= value <= 1:
            raise ValueError("out of range: a fraction is 0 to 1 (a percentage 0% to 100%)")
        return cls(fraction=value)

    def allows(self, missing: int, held: int) -> bool:
        if self.count is not None:
            return missing <= self.count
        return missing <= (self.fraction or 0) * held

    def __str__(self) -> str:
        if self.count is not None:
            return f"{self.count} symbol(s)"
        return f"{((self.fraction or Decimal(0)) * 100).normalize():f}%"


@dataclass(frozen=True)
class BatchOptions:
    portfolio_ids: tuple[int, ...] | None = None
    chunk_size: int = 5000
    lease: timedelta = timedelta(minutes=15)
    # Wait (at most one lease) for slots other live runs hold, take over the
    # expired ones, and finish them.
    wait: bool = False
    # After losing the server mid-run: keep trying to reconnect this long (pauses
    # of 0.25 s doubling to 5 s) before the run gives up; once more to record its end.
    reconnect: timedelta = timedelta(minutes=1)
    # Refuse a date (and every later one) on which more of the held symbols
    # than this have no close (they would be carried forward).
    max_stale: StaleLimit = field(default_factory=lambda: StaleLimit.parse("5%"))


@dataclass(frozen=True)
class Failure:
    portfolio_id: int
    reason: str
    day: date | None = None

    def to_json(self) -> dict:
        return {"portfolio_id": self.portfolio_id, "date": self.day.isoformat() if self.day else None,
                "reason": self.reason}


@dataclass(frozen=True)
class Refused:
    """A claimed portfolio finalize_claimed.sql did not compute (its claim released)."""

    portfolio_id: int
    kind: str        # missing_price | bad_price | missing_mark | later_snapshot | earlier_unfinished | missing_earlier
    detail: str


@dataclass(frozen=True)
class Finalized:
    done: list[int]
    refused: list[Refused]
    lost: list[int]                    # owned, but another run took the claim over


@dataclass(frozen=True)
class ChunkPlan:
    """What claim_owed_dates.sql found and claimed for one chunk (or, with
    nothing claimed, what a chunk's listing says it would find: ChunkListing.plan)."""

    owed: dict[int, list[date]]        # portfolio -> its owed dates, ascending
    got: set[tuple[int, date]]         # the slots this run now owns
    reclaimed: int
    starts: Counter[date]              # where the chunk's chains start, counted
    busy: frozenset[int]               # portfolios with an owed slot that exists (someone's claim)
    follows: dict[tuple[int, date], date | None]   # owed slot -> the complete snapshot it follows


@dataclass(frozen=True)
class ChunkListing:
    """A chunk's ids (batch/list_portfolio_chunk.sql) and where their chains
    end: how many on the run's date (ends_on), how many on the price date
    before it (ends_before), and which were never run (fresh)."""

    ids: list[int]
    ends_on: int = 0
    before: date | None = None          # the latest price date before the run's date
    ends_before: int = 0
    fresh: frozenset[int] = frozenset()

    @classmethod
    def of(cls, row: asyncpg.Record) -> ChunkListing:
        """A row of batch/list_portfolio_chunk.sql."""
        return cls(list(row["ids"]), row["ends_on"], row["before_date"], row["ends_before"],
                   frozenset(row["fresh_ids"]))

    def plan(self, day: date, start: date, report_from: date | None) -> ChunkPlan | None:
        """The plan claim_owed_dates.sql would make for this chunk (claim=False)
        in a run of `day` (a price date; portfolios without a chain start at
        `start`), when the listing already knows it, else None. Owed dates,
        follows and starts are the query's; busy is empty (the listing does not
        look for existing slots): a slot that exists (another run's claim) is
        found by insert_complete.sql instead, which writes nothing for it, and
        the two-step path takes it as it would from busy:
          * every chain ends on `day` (a re-run): nothing is owed;
          * each chain ends on the price date before `day`, or the portfolio was
            never run and starts on `day` (the daily run, a first run): each
            owes `day` alone, following that date (or nothing).
        equity_as_of names a complete snapshot wherever it is set (migration
        0013's triggers), and insert_complete.sql refuses a slot whose previous
        snapshot is not the one planned (a snapshot another run wrote meanwhile).
        A chain end must not be after report_from: a chain that ends by it
        started by it too (the plan's start count); a later one needs the plan's
        probe of where it starts (before_chain)."""
        n = len(self.ids)
        if not n or report_from is None:
            return None
        if self.ends_on == n and day <= report_from:
            return ChunkPlan(owed={}, got=set(), reclaimed=0, starts=Counter({day: n}), busy=frozenset(),
                             follows={})
        if self.ends_before + len(self.fresh) != n or (self.fresh and start != day):
            return None
        starts: Counter[date] = Counter()
        if self.fresh:
            starts[day] = len(self.fresh)
        if self.ends_before:
            if self.before is None or self.before > report_from:
                return None
            starts[self.before] = self.ends_before
        return ChunkPlan(owed={p: [day] for p in self.ids}, got=set(), reclaimed=0, starts=starts,
                         busy=frozenset(),
                         follows={(p, day): None if p in self.fresh else self.before for p in self.ids})


@dataclass
class DateTally:
    """Outcomes of the owed slots of one date (already_done is derived)."""

    processed: int = 0
    held: int = 0
    failed: int = 0
    lost: int = 0
    before_chain: int = 0              # owed when planned; another run then started the chain later


@dataclass(frozen=True)
class DateReport:
    day: date
    processed: int
    already_done: int
    before_chain: int
    held: int
    failed: int
    lost: int

    def to_json(self) -> dict:
        return {"date": self.day.isoformat(), **{b: getattr(self, b) for b in BUCKETS}}


@dataclass(frozen=True)
class Holder:
    run_id: int | None
    claims: int
    first_date: date
    last_date: date
    lease_expires_at: datetime
    host: str | None
    pid: int | None

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "claims": self.claims, "first_date": self.first_date.isoformat(),
                "last_date": self.last_date.isoformat(), "lease_expires_at": self.lease_expires_at.isoformat(),
                "host": self.host, "pid": self.pid}


@dataclass
class RunResult:
    run_id: int
    date: date                          # the last date the run covers
    start: date                         # where a portfolio without a snapshot starts
    total: int = 0                      # selected portfolios
    report_dates: tuple[date, ...] = ()  # always reported (D; a backfill's price dates)
    report_from: date | None = None     # no date before it is reported (None: unknown): the run's start,
                                        # its report dates, or the first price date it may cover
    tallies: dict[date, DateTally] = field(default_factory=dict)
    chain_starts: Counter[date] = field(default_factory=Counter)
    reclaimed: int = 0
    failures: list[Failure] = field(default_factory=list)
    holders: list[Holder] = field(default_factory=list)
    abandoned_runs: list[int] = field(default_factory=list)
    status: str = "running"
    seconds: float = 0.0
    waited: float = 0.0
    # held slots to look at again: portfolio -> its first held date (all its
    # covered dates from there on are held)
    revisit: dict[int, date] = field(default_factory=dict)
    lost_slots: list[tuple[int, date]] = field(default_factory=list)
    # Why the run ended before its work was done (the server stayed away), or
    # could not record its end; None for a run that went all the way.
    error: str | None = None
    # claims a failed chunk could not give back (the server was away): released
    # when the run records its end, else they expire with their lease
    unreleased: dict[int, date] = field(default_factory=dict)
    # prices: what each covered date carried forward, and the dates refused as too stale
    stale: list[StaleDate] = field(default_factory=list)
    refused: StaleRefusal | None = None
    # when the run last recorded its progress (time.monotonic(); _heartbeat), or started
    beat_at: float = field(default_factory=time.monotonic, repr=False)

    # ---- counting
    def tally(self, day: date) -> DateTally:
        t = self.tallies.get(day)
        if t is None:
            t = self.tallies[day] = DateTally()
        return t

    def fail(self, pid: int, days: Iterable[date], reason: str, record: bool = True) -> None:
        """Count pid failed on each of `days`; keep the reason once (for the first
        day), among the first MAX_REPORTED_FAILURES (all are counted)."""
        for n, day in enumerate(days):
            self.tally(day).failed += 1
            if record and n == 0 and len(self.failures) < MAX_REPORTED_FAILURES:
                self.failures.append(Failure(pid, reason, day))

    def hold(self, pid: int, days: list[date]) -> None:
        for day in days:
            self.tally(day).held += 1
        if days:
            self.revisit[pid] = min(self.revisit.get(pid, days[0]), days[0])

    @property
    def reached(self) -> int:
        return sum(self.chain_starts.values())

    def dates(self) -> list[DateReport]:
        """Per covered date: every reached portfolio in exactly one bucket."""
        starts = sorted(self.chain_starts.items())
        out = []
        for day in sorted(set(self.tallies) | set(self.report_dates)):
            t = self.tallies.get(day, DateTally())
            before = sum(n for start, n in starts if start > day) + t.before_chain
            owed = t.processed + t.held + t.failed + t.lost + t.before_chain
            done = self.reached - sum(n for start, n in starts if start > day) - owed
            out.append(DateReport(day, t.processed, done, before, t.held, t.failed, t.lost))
        return out

    def totals(self) -> dict[str, int]:
        reports = self.dates()
        return {b: sum(getattr(r, b) for r in reports) for b in BUCKETS}

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.tallies.values())

    @property
    def held(self) -> int:
        return sum(t.held for t in self.tallies.values())

    @property
    def processed(self) -> int:
        return sum(t.processed for t in self.tallies.values())

    @property
    def outcome(self) -> str:
        """'done' (exit 0), 'held' (75: retry), 'stale' (75: dates refused for
        missing closes), 'failed' (1) or 'interrupted'."""
        if self.status == "interrupted":
            return "interrupted"
        if self.failed or self.error:
            return "failed"
        if self.held:
            return "held"
        return "stale" if self.refused else "done"

    def stale_json(self) -> dict:
        """`stale_symbols`: what the run carried forward (count, the first names,
        per date) and the dates it refused; also stored in batch_runs."""
        names: list[str] = []
        for s in self.stale:
            names += [n for n in s.names if n not in names]
        return {"count": sum(s.count for s in self.stale), "names": names[:MAX_STALE_NAMES],
                "dates": [s.to_json() for s in self.stale],
                "refused": self.refused.to_json() if self.refused else None}

    def to_json(self) -> dict:
        totals = self.totals()
        return {
            "run_id": self.run_id,
            "date": self.date.isoformat(),
            "from": self.start.isoformat(),
            "status": self.status,
            "outcome": self.outcome,
            "error": self.error,
            "total": self.total,
            "not_reached": self.total - self.reached,
            **totals,
            "reclaimed": self.reclaimed,
            "dates": [r.to_json() for r in self.dates()],
            "failures": [f.to_json() for f in self.failures],
            "failures_truncated": self.failed > len(self.failures),
            "holders": [h.to_json() for h in self.holders],
            "abandoned_runs": self.abandoned_runs,
            "stale_symbols": self.stale_json(),
            "waited_seconds": round(self.waited, 3),
            "seconds": round(self.seconds, 3),
        }


ProgressFn = Callable[[int, int], None]


# ---------------------------------------------------------------- one chunk, step by step
async def claim_owed(conn: asyncpg.Connection, run_id: int, last: date, ids: list[int], lease: timedelta,
                     starts: list[date], floors: bool = False, claim: bool = True,
                     report_from: date | None = None) -> ChunkPlan:
    """Find each portfolio's owed dates up to `last` and claim them (taking over
    expired claims): one statement, in one short transaction. With claim=False
    only the plan: nothing is written. report_from: no date before it is
    reported (ChunkPlan.starts is exact only from there on; None: exact)."""
    async with planned_transaction(conn):
        row = await conn.fetchrow(sql("batch/claim_owed_dates"), run_id, last, ids, lease, starts, floors, claim,
                                  report_from)
    owed: dict[int, list[date]] = defaultdict(list)
    for pid, day in zip(row["owed_ids"], row["owed_dates"], strict=True):
        owed[pid].append(day)
    return ChunkPlan(dict(owed), set(zip(row["got_ids"], row["got_dates"], strict=True)), row["reclaimed"],
                     Counter(dict(zip(row["start_dates"], row["start_counts"], strict=True))),
                     frozenset(row["busy_ids"]),
                     dict(zip(zip(row["owed_ids"], row["owed_dates"], strict=True), row["owed_prev"], strict=True)))


async def insert_complete(conn: asyncpg.Connection, run_id: int, day: date,
                          follows: dict[int, date | None]) -> tuple[list[int], list[Refused], list[int]]:
    """Claim and finalize in one statement, in one short transaction: lock the
    portfolios (follows: portfolio -> the complete snapshot its slot of `day`
    follows, by the plan) that no other transaction holds (id order, SKIP
    LOCKED), then insert every free slot of `day` of those complete and set
    equity (batch/insert_complete.sql), where the portfolio's chain still ends
    where the plan said (else it is left alone: the plan is stale). Returns
    (inserted, refused, busy): a refused portfolio was not computable now; a
    busy one is being written by another transaction right now (its row lock
    was taken); one in none of them has a slot someone holds, or a stale plan."""
    async with planned_transaction(conn):
        locked = [r["id"] for r in await conn.fetch(sql("batch/lock_free_portfolios"), list(follows))]
        busy = sorted(set(follows).difference(locked))
        if not locked:
            return [], [], busy
        row = await conn.fetchrow(sql("batch/insert_complete"), run_id, day, locked, True,
                                  [follows[p] for p in locked])
    refused = [Refused(pid, kind, detail) for pid, kind, detail in
               zip(row["refused_ids"], row["refused_kinds"], row["refused_details"], strict=True)]
    return list(row["inserted_ids"]), refused, busy


async def renew_leases(conn: asyncpg.Connection, run_id: int, ids: list[int], from_dates: list[date],
                       lease: timedelta) -> set[tuple[int, date]]:
    """Extend our unfinished claims on or after each portfolio's date; returns the ones we still hold."""
    rows = await conn.fetch(sql("batch/renew_leases"), run_id, ids, from_dates, lease)
    return {(r["portfolio_id"], r["snapshot_date"]) for r in rows}


@asynccontextmanager
async def lease_heartbeat(pool: asyncpg.Pool, run_id: int, claims: dict[int, date],
                          lease: timedelta) -> AsyncIterator[None]:
    """While the body runs (a chunk's finalize statements, however slow), renew
    the leases of the chunk's claims (every date of each portfolio from the
    given one on) every third of the lease, on a connection of its own, so a
    live run's claims never expire under it. A claim another run took over is
    not renewed (the renewal is fenced like finalize); a renewal that fails is
    tried again at the next beat."""
    every = lease.total_seconds() / 3
    ids = sorted(claims)
    froms = [claims[p] for p in ids]

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                async with pool.acquire() as conn:
                    await renew_leases(conn, run_id, ids, froms, lease)
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
    "missing_earlier": "price date {detail} (before {day}) has no snapshot: {day} would be computed across "
                       "the hole; claim released, the next run computes {detail} first",
    "later_snapshot": "has a complete snapshot on {detail}, after {day}: finishing {day} now would break "
                      "its equity chain; claim released",
    "earlier_unfinished": "its snapshot for {detail} (before {day}) is claimed but unfinished; "
                          "claim released: run {day} again once {detail} is done",
    "bad_price": "bad price: the close of {detail} on or before {day} is <= 0; claim released: correct it in "
                 "market_prices and run again",
    "missing_mark": "no valuation mark of {detail} for {day} (a position added after this run fixed the "
                    "date's marks); claim released: run again",
}


async def finalize_chunk(conn: asyncpg.Connection, run_id: int, day: date, owned: list[int],
                         gap_free: bool = True) -> Finalized:
    """Compute and finalize, fenced on run_id, in one short transaction: lock the
    portfolios (id order), then one statement writes snapshots and equity."""
    async with planned_transaction(conn):
        await conn.fetch(sql("batch/lock_portfolios"), owned)
        row = await conn.fetchrow(sql("batch/finalize_claimed"), run_id, day, owned, gap_free)
    refused = [Refused(pid, kind, detail) for pid, kind, detail in
               zip(row["failed_ids"], row["failed_kinds"], row["failed_details"], strict=True)]
    settled = set(row["finalized_ids"]) | set(row["failed_ids"])
    return Finalized(list(row["finalized_ids"]), refused, [p for p in owned if p not in settled])


async def finalize_isolating(conn: asyncpg.Connection, run_id: int, day: date, owned: list[int],
                             gap_free: bool = True) -> tuple[Finalized, dict[int, str]]:
    """finalize_chunk; when it fails on a data error (class 22/23: a numeric
    overflow, a check violation, a division by zero), split the portfolios in
    halves, recursively, until the failing ones stand alone: every other one is
    finalized (one set-based statement per half), and each failing one comes
    back with the database's message (portfolio -> reason; its claim is still
    held: the caller releases it). One bad portfolio among n costs about
    2*log2(n) more statements; nothing of a failed statement was written."""
    try:
        return await finalize_chunk(conn, run_id, day, owned, gap_free), {}
    except asyncpg.PostgresError as exc:
        if not is_data_error(exc):
            raise
        if len(owned) == 1:
            return Finalized([], [], []), {owned[0]: _data_error(exc)}
    half = len(owned) // 2
    first, bad_first = await finalize_isolating(conn, run_id, day, owned[:half], gap_free)
    second, bad_second = await finalize_isolating(conn, run_id, day, owned[half:], gap_free)
    return (Finalized(first.done + second.done, first.refused + second.refused, first.lost + second.lost),
            {**bad_first, **bad_second})


def _data_error(exc: BaseException) -> str:
    """A data error as a failure reason: the database's message, SQLSTATE and
    detail (scrubbed, on one line, the detail cut short)."""
    detail = " ".join(str(getattr(exc, "detail", None) or "").split())
    if len(detail) > MAX_REASON_DETAIL:
        detail = detail[:MAX_REASON_DETAIL] + "..."
    why = f"{first_line(exc)} (SQLSTATE {getattr(exc, 'sqlstate', '?')}{'; ' + detail if detail else ''})"
    return scrub(f"data error: {why}; claim released: correct the portfolio's data, then run again")


def reason(refused: Refused, day: date) -> str:
    return FAILURE_REASONS[refused.kind].format(day=day.isoformat(), detail=refused.detail)


async def release_claims(conn: asyncpg.Connection, run_id: int,
                         release: Mapping[int, date]) -> list[tuple[int, date]]:
    """Delete this run's unfinished claims of each portfolio on or after its
    date ({portfolio: from date}); nothing to give back: no statement."""
    if not release:
        return []
    pids = sorted(release)
    rows = await conn.fetch(sql("batch/release_claims"), run_id, pids, [release[p] for p in pids])
    return [(r["portfolio_id"], r["snapshot_date"]) for r in rows]


# ---------------------------------------------------------------- prices: --max-stale and the valuation marks
@dataclass(frozen=True)
class DatePrices:
    """One price date a run may cover, as sql/batch/check_run_prices.sql sees it."""

    day: date
    held: int                          # symbols held that day
    stale: int                         # of which without a mark yet, no close on the day, an earlier one
    names: list[str]                   # the first of those


@dataclass(frozen=True)
class StaleDate:
    """A covered date's marks carried forward (held, no close on the date)."""

    day: date
    count: int
    names: list[str]

    def to_json(self) -> dict:
        return {"date": self.day.isoformat(), "count": self.count, "names": self.names}


@dataclass(frozen=True)
class StaleRefusal:
    """The first date a run refused because too many held symbols have no close
    on it; it and every later date up to `asked` are left for a later run."""

    day: date
    asked: date
    no_close: int
    held: int
    names: list[str]
    limit: str

    def message(self) -> str:
        more = ", ..." if self.no_close > len(self.names) else ""
        span = f"{self.day}" if self.day == self.asked else f"{self.day}..{self.asked}"
        return (f"prices missing on {self.day}: {self.no_close} of {self.held} held symbol(s) have no close on "
                f"that date (e.g. {', '.join(self.names[:5])}{more}), more than --max-stale {self.limit}; "
                f"{span} not run: load them and re-run, or pass --max-stale")

    def to_json(self) -> dict:
        return {"date": self.day.isoformat(), "to": self.asked.isoformat(), "no_close": self.no_close,
                "held": self.held, "names": self.names, "max_stale": self.limit, "message": self.message()}


class StalePrices(RetryLater):
    """The first date a run would cover has too many held symbols without a
    close: nothing was written (exit 75: load them and the next attempt runs)."""

    def __init__(self, refusal: StaleRefusal) -> None:
        super().__init__(refusal.message())
        self.refusal = refusal


@dataclass(frozen=True)
class PricePlan:
    """What a run covers after the --max-stale check: every date up to `last`."""

    last: date
    dates: list[date]                   # the dates whose marks the run fixes (in order)
    refused: StaleRefusal | None
    first: date | None = None           # the first price date the run may cover (None: none): no
                                        # portfolio is owed an earlier one

    def report_from(self, start: date, report_dates: Iterable[date]) -> date:
        """The earliest date a run reports (RunResult.report_from): its start, its report
        dates, or the first price date it may cover."""
        return min(start, *report_dates, *([self.first] if self.first else []))


async def check_prices(conn: asyncpg.Connection, last: date, start: date, opts: BatchOptions) -> PricePlan:
    """Before anything is written: every price date the run may cover, in order;
    the first one with more held symbols lacking a close than --max-stale allows
    is refused with every later one. Raises StalePrices when that is the first
    date (nothing to run); else the run stops the day before it."""
    ids = list(opts.portfolio_ids) if opts.portfolio_ids is not None else None
    # Planned on a snapshot table that is empty now (a first run, or after a TRUNCATE) while
    # another run fills it, a chain-end probe became a sequential scan per portfolio: minutes.
    async with planned_transaction(conn):
        rows = [DatePrices(r["mark_date"], r["held"], r["stale"], list(r["stale_names"] or []))
                for r in await conn.fetch(sql("batch/check_run_prices"), last, ids, start)]
    for n, p in enumerate(rows):
        if not opts.max_stale.allows(p.stale, p.held):
            refusal = StaleRefusal(p.day, last, p.stale, p.held, p.names, str(opts.max_stale))
            if n == 0:
                raise StalePrices(refusal)
            return PricePlan(rows[n - 1].day, [q.day for q in rows[:n] if q.held], refusal, rows[0].day)
    return PricePlan(last, [p.day for p in rows if p.held], None, rows[0].day if rows else None)


async def fix_marks(conn: asyncpg.Connection, day: date, run_id: int) -> StaleDate:
    """Fix the valuation marks of `day` (the ones not fixed yet), one statement;
    returns the day's marks that are carried forward."""
    row = await conn.fetchrow(sql("batch/fix_marks"), day, run_id)
    return StaleDate(day, row["stale"], list(row["stale_names"]))


async def _fix_run_marks(pool: asyncpg.Pool, result: RunResult, plan: PricePlan) -> None:
    """Once per run, before any chunk: fix the marks of every date it covers,
    in date order, and record what they carried forward."""
    result.refused = plan.refused
    async with pool.acquire() as conn:
        for day in plan.dates:
            stale = await fix_marks(conn, day, result.run_id)
            if stale.count:
                result.stale.append(stale)
        if result.stale or result.refused:
            await conn.execute(sql("runs/record_stale"), result.run_id, json.dumps(result.stale_json()))


# ---------------------------------------------------------------- a whole run
def _first_line(exc: BaseException) -> str:
    """The message kept in failures and batch_runs: one line, no credentials.
    A driver error raised while cleaning up after the real one (a rollback on a
    connection the server closed) names the real one."""
    cause = exc.__context__
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError) and isinstance(cause, DB_FAULTS):
        exc = cause
    return scrub(first_line(exc))


class _Link:
    """The run's hold on its server. After a connection fault (a restart, a
    shutdown, a reset) a worker calls recover(): one worker at a time waits
    for the server (attempts after 0.25 s doubling up to 5 s, for at most
    `window`), the others then find it back at once. A server that stays away
    a whole window ends the run (`gone`: the reason); it records its outcome
    when the server answers again (_record_end). A stop (SIGTERM, SIGINT) ends
    the waiting at once: the chunks in flight have already failed, so there is
    nothing left to finish, and a supervisor's stop timeout is shorter than the
    two windows a waiting run could otherwise take."""

    def __init__(self, pool: asyncpg.Pool, result: RunResult, window: timedelta,
                 stop: asyncio.Event | None = None) -> None:
        self.pool, self.result, self.window = pool, result, window
        self.stop = stop or asyncio.Event()
        self.lock = asyncio.Lock()
        self.gone: str | None = None

    async def wait_for_server(self, fault: BaseException) -> BaseException | None:
        """Reconnect (the pool's old connections are dropped) and record a
        progress heartbeat; None once that worked, else the last fault."""
        await self.pool.expire_connections()
        deadline = time.monotonic() + self.window.total_seconds()
        pause = RECONNECT_PAUSE_S[0]
        log.warning("run #%d lost the database (%s); reconnecting for up to %ss", self.result.run_id,
                    _first_line(fault), round(self.window.total_seconds()))
        while True:
            try:
                await _record(self.pool, self.result, final=False)
            except DB_FAULTS as exc:
                if not is_connection_fault(exc):
                    return None            # the server answered
                fault = exc
            else:
                log.warning("run #%d reconnected", self.result.run_id)
                return None
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.is_set():
                return fault
            try:                           # a pause that a stop ends early
                await asyncio.wait_for(self.stop.wait(), min(pause, left))
            except TimeoutError:
                pass
            pause = min(pause * 2, RECONNECT_PAUSE_S[1])

    async def recover(self, fault: BaseException) -> bool:
        """True when the server is back (go on), False when the run is over."""
        async with self.lock:
            if self.gone is None:
                last = await self.wait_for_server(fault)
                if last is not None and self.stop.is_set():
                    self.give_up(f"lost the database and stopped (signal) while reconnecting "
                                 f"({_first_line(last)})")
                elif last is not None:
                    self.give_up(f"lost the database and could not reconnect within "
                                 f"{round(self.window.total_seconds())}s ({_first_line(last)})")
            return self.gone is None

    def give_up(self, why: str) -> None:
        if self.gone is None:
            self.gone = self.result.error = why
            log.warning("run #%d stops: %s", self.result.run_id, why)

    async def step(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run a step of the run (not a chunk: those fail on their own), again
        after a reconnect; a database error that remains ends the run. So does
        a connection fault that comes back after STEP_RECONNECTS reconnects
        that worked: the server answers, so the fault is this step's (a bug in
        pnl, say), and trying it again forever would hang the run. Only reconnects
        that worked at once count: a server that was really away (a failover
        waited for) starts the count again."""
        reconnects = 0
        while self.gone is None:
            try:
                await work()
                return
            except DB_FAULTS as exc:
                if not is_connection_fault(exc):
                    self.give_up(f"database error: {_first_line(exc)}")
                    return
                if reconnects >= STEP_RECONNECTS:
                    self.give_up(f"database error: {_first_line(exc)} (again after {reconnects} reconnects "
                                 f"that worked at once: the server answers)")
                    return
                began = time.monotonic()
                if not await self.recover(exc):
                    return
                at_once = time.monotonic() - began < RECONNECT_PAUSE_S[0]
                reconnects = reconnects + 1 if at_once else 0


RELEASED = "claims released"


async def _release_quietly(pool: asyncpg.Pool, link: _Link, release: dict[int, date],
                           fault: BaseException) -> str:
    """Give back our claims on a fresh connection (after the server is back,
    when `fault` lost it); say what happened to them."""
    if not release:
        return RELEASED
    if not is_connection_fault(fault) or await link.recover(fault):
        try:
            async with pool.acquire() as conn:
                await release_claims(conn, link.result.run_id, release)
            return RELEASED
        except DB_FAULTS:
            pass
    held = link.result.unreleased
    for pid, day in release.items():
        held[pid] = min(held.get(pid, day), day)
    return ("claims not released (the database is away): the run gives them back when it records its end, "
            "else they expire with their lease and a later run takes them over")


class _Chunk:
    """One chunk of portfolios through its dates: the per-portfolio bookkeeping
    between claim_owed and the date-by-date finalize."""

    def __init__(self, result: RunResult, plan: ChunkPlan) -> None:
        self.result = result
        self.mine: dict[int, list[date]] = {}        # portfolio -> the dates we own, in order
        self.release: dict[int, date] = {}           # portfolio -> give back our claims from this date
        for pid, dates in plan.owed.items():
            n = 0
            while n < len(dates) and (pid, dates[n]) in plan.got:
                n += 1
            if n:
                self.mine[pid] = dates[:n]
            if n < len(dates):
                # An earlier date is another run's: the rest waits for it (in date order).
                result.hold(pid, dates[n:])
                if any((pid, d) in plan.got for d in dates[n:]):
                    self.release[pid] = dates[n]
        self.stopped: set[int] = set()

    def by_date(self) -> list[date]:
        return sorted({d for dates in self.mine.values() for d in dates})

    def active(self, day: date) -> list[int]:
        return sorted(p for p, dates in self.mine.items() if p not in self.stopped and day in dates)

    def later(self, pid: int, day: date) -> list[date]:
        return [d for d in self.mine[pid] if d > day]

    def stop(self, pid: int, day: date, bucket: str, why: str = "") -> None:
        """pid is done for this chunk at `day` (counted by the caller); its later
        dates go to `bucket` and our claims on them are given back."""
        self.stopped.add(pid)
        later = self.later(pid, day)
        if not later:
            return
        if bucket == "held":
            self.result.hold(pid, later)
        else:
            self.result.fail(pid, later, why, record=False)
        self.release[pid] = later[0]


async def _write_free_slots(pool: asyncpg.Pool, result: RunResult, ids: list[int], opts: BatchOptions,
                            known: ChunkPlan | None = None) -> tuple[list[int], dict[int, list[date]] | None]:
    """The one-write path of a main-pass chunk: plan its owed dates (nothing
    claimed; or `known`, the plan its listing gave), then date by date insert
    every free slot as a complete snapshot (insert_complete: the claim and the
    result are one row, one statement).

    Returns (rest, left): the portfolios left for the two-step protocol
    (claim_owed, then finalize: it takes over, holds, fails and reports), and
    each one's owed dates not settled here (what a failed claim fails); left
    is None when the plan itself failed: then nothing was counted here, not
    even the chunk's chain starts, and rest is every id. A portfolio is left
    when a slot of its owed dates exists (another run's claim), when it is not
    computable now (the two-step path says why), or from the date where a
    statement failed (nothing of a failed statement was written). One another
    run is writing right now (its row is locked) is held from that date: the
    run looks at it again at the end, when that run has finished it (runs that
    start together thus share the chunks instead of queueing on each one).
    Nothing here outlives its transaction: a crash leaves no claim to expire."""
    plan = known
    if plan is None:
        try:
            async with pool.acquire() as conn:
                plan = await claim_owed(conn, result.run_id, result.date, ids, opts.lease,
                                        [result.start] * len(ids), claim=False, report_from=result.report_from)
        except DB_FAULTS:
            return ids, None
    result.chain_starts.update(plan.starts)
    owed = {p: dates for p, dates in sorted(plan.owed.items()) if p not in plan.busy}   # in id order
    rest = set(plan.owed) - set(owed)
    if not owed:                              # nothing to write (a re-run): no connection to take and reset
        return sorted(rest), {p: plan.owed[p] for p in rest}
    written: dict[int, int] = dict.fromkeys(owed, 0)      # portfolio -> owed dates settled, in order
    try:
        async with pool.acquire() as conn:
            for day in sorted({d for dates in owed.values() for d in dates}):
                # no claim says this run is alive: the heartbeat must, at least every third of the lease
                await _heartbeat(pool, result, every=opts.lease.total_seconds() / 3)
                todo = [p for p, dates in owed.items()
                        if p not in rest and written[p] < len(dates) and dates[written[p]] == day]
                if not todo:
                    continue
                try:
                    inserted, refused, busy = await insert_complete(
                        conn, result.run_id, day, {p: plan.follows[(p, day)] for p in todo})
                except DB_FAULTS as exc:
                    if is_connection_fault(exc):
                        raise
                    rest.update(todo)         # a data error, a timeout: the two-step path isolates it
                    continue
                result.tally(day).processed += len(inserted)
                before = {r.portfolio_id for r in refused if r.kind == "later_snapshot"}
                result.tally(day).before_chain += len(before)   # another run started its chain later
                settled = before.union(inserted)
                for pid in settled:
                    written[pid] += 1
                for pid in busy:              # another run is writing it: look again at the end
                    result.hold(pid, owed[pid][written[pid]:])
                    written[pid] = len(owed[pid])
                settled.update(busy)
                rest.update(p for p in todo if p not in settled)
    except DB_FAULTS:
        pass                                  # the two-step path meets the fault and deals with it
    rest.update(p for p, dates in owed.items() if written[p] < len(dates))
    left = {p: plan.owed[p][written.get(p, 0):] for p in rest}
    return sorted(rest), left


async def _process_chunk(pool: asyncpg.Pool, result: RunResult, ids: list[int], starts: list[date],
                         floors: bool, opts: BatchOptions, link: _Link, known: ChunkPlan | None = None) -> None:
    """One chunk of the main pass (floors false) or of a revisit (floors true);
    known: its plan, when the chunk's listing already says it (ChunkListing.plan)."""
    run_id = result.run_id
    counted = floors
    left: dict[int, list[date]] | None = None
    if not floors:
        ids, left = await _write_free_slots(pool, result, ids, opts, known)
        counted = left is not None
        if not ids:
            return
        starts = [result.start] * len(ids)
    for retry in (False, True):
        try:
            async with pool.acquire() as conn:
                plan = await claim_owed(conn, run_id, result.date, ids, opts.lease, starts, floors,
                                        report_from=result.report_from)
            break
        except DB_FAULTS as exc:
            # Unsure what we own: give back whatever we may hold of these portfolios.
            note = await _release_quietly(pool, link, dict(zip(ids, starts, strict=True)), exc)
            if not retry and note == RELEASED and is_connection_fault(exc):
                continue      # the server was lost before any work: none of it is ours now; claim again
            if not counted:
                result.chain_starts[result.date] += len(ids)
            for pid, start in zip(ids, starts, strict=True):
                days = ([d for d in sorted(result.tallies) if d >= start] if floors
                        else left[pid] if left is not None else [result.date])
                result.fail(pid, days, f"chunk failed while claiming ({_first_line(exc)}); {note}")
            return
    if not counted:
        result.chain_starts.update(plan.starts)
    result.reclaimed += plan.reclaimed
    chunk = _Chunk(result, plan)
    counted_through: date | None = None      # dates up to this one are counted
    try:
        async with pool.acquire() as conn, lease_heartbeat(
                pool, run_id, {p: dates[0] for p, dates in chunk.mine.items()}, opts.lease):
            await release_claims(conn, run_id, chunk.release)
            chunk.release.clear()
            for day in chunk.by_date():
                owned = chunk.active(day)
                if not owned:
                    continue
                fin, poisoned = await finalize_isolating(conn, run_id, day, owned)
                _count(result, chunk, day, fin)
                for pid, why in poisoned.items():
                    result.fail(pid, [day], why)
                    chunk.stop(pid, day, "failed", f"not computed: {day} failed ({why})")
                    chunk.release[pid] = day          # its claim on `day` too: the statement wrote nothing
                counted_through = day
                await release_claims(conn, run_id, chunk.release)
                chunk.release.clear()
    except DB_FAULTS as exc:
        # A finalize statement is atomic: nothing of this date was written.
        # Give back everything this run still holds of the chunk, on a fresh connection.
        pending = {p: [d for d in dates if counted_through is None or d > counted_through]
                   for p, dates in chunk.mine.items() if p not in chunk.stopped}
        pending = {p: ds for p, ds in pending.items() if ds}
        release = {**chunk.release, **{p: ds[0] for p, ds in pending.items()}}
        note = await _release_quietly(pool, link, release, exc)
        for pid, days in pending.items():
            result.fail(pid, days, f"chunk failed ({_first_line(exc)}); {note}")


def _count(result: RunResult, chunk: _Chunk, day: date, fin: Finalized) -> None:
    tally = result.tally(day)
    tally.processed += len(fin.done)
    for r in fin.refused:
        if r.kind == "later_snapshot":
            tally.before_chain += 1          # another run started its chain after this date
        elif r.kind == "earlier_unfinished":
            result.hold(r.portfolio_id, [day])
            chunk.stop(r.portfolio_id, day, "held")
        else:
            why = reason(r, day)
            result.fail(r.portfolio_id, [day], why)
            chunk.stop(r.portfolio_id, day, "failed", f"not computed: {day} failed ({why})")
    for pid in fin.lost:
        tally.lost += 1
        result.lost_slots.append((pid, day))
        chunk.stop(pid, day, "held")


def _status(result: RunResult, stopped: bool) -> str:
    if stopped:
        return "interrupted"
    outcome = result.outcome
    if outcome == "failed":
        return "partial" if result.processed else "failed"
    return {"held": "held", "stale": "stale"}.get(outcome, "succeeded")


async def _record(pool: asyncpg.Pool, r: RunResult, final: bool) -> None:
    t = r.totals()
    counts = (t["processed"], t["already_done"], t["failed"], r.reclaimed, t["lost"])
    async with pool.acquire() as conn:
        if final:
            failures = json.dumps([f.to_json() for f in r.failures[:MAX_RECORDED_FAILURES]])
            await conn.execute(sql("runs/finish_run"), r.run_id, r.status, *counts, failures, t["held"],
                               t["before_chain"])
        else:
            await conn.execute(sql("runs/record_progress"), r.run_id, *counts, t["held"], t["before_chain"])


async def _heartbeat(pool: asyncpg.Pool, result: RunResult, every: float = 0.0) -> None:
    """Record the run's progress (its heartbeat: runs/mark_abandoned.sql), unless
    the last one, wherever it was written, is younger than `every` seconds."""
    now = time.monotonic()
    if now - result.beat_at < every:
        return
    result.beat_at = now
    try:
        await _record(pool, result, final=False)
    except DB_FAULTS:
        pass  # progress is informational; the next chunk will say whether the database is gone


async def _start(pool: asyncpg.Pool, last: date, start: date, opts: BatchOptions,
                 report_dates: tuple[date, ...], report_from: date) -> tuple[RunResult, list[int] | None]:
    async with pool.acquire() as conn:
        filter_ids = list(opts.portfolio_ids) if opts.portfolio_ids is not None else None
        if filter_ids is not None:
            unknown = [r["id"] for r in await conn.fetch(sql("batch/find_unknown_portfolios"), filter_ids)]
            if unknown:
                raise BadInput(f"unknown portfolio id(s): {', '.join(map(str, unknown))}")
        total = await conn.fetchval(sql("batch/count_portfolios"), filter_ids)
        abandoned = [r["id"] for r in await conn.fetch(sql("runs/mark_abandoned"))]
        run = await conn.fetchrow(sql("runs/start_run"), last, socket.gethostname(), os.getpid(), start, opts.lease)
    result = RunResult(run_id=run["id"], date=last, start=start, total=total, report_dates=report_dates,
                       report_from=report_from,
                       abandoned_runs=abandoned)
    return result, filter_ids


def starting_chunk(run_id: int, chunks: int) -> int:
    """Which of a run's chunks (0 = the one with the lowest ids) it walks first:
    set by the run id (the golden-ratio sequence: consecutive ids land far
    apart). Runs started together (two cron hosts, a retry) then begin in
    different parts of the book and mostly find their chunks untouched, instead
    of all starting at the lowest id and stepping around each other's row
    locks; a part another run has finished costs a plan that finds nothing owed."""
    return int((run_id * GOLDEN_RATIO) % 1.0 * chunks) if chunks > 1 else 0


class _Chunks:
    """Hands out the run's chunks (keyset pagination), one at a time, to however
    many workers share the run: the chunks a walk in id order from the lowest
    id makes, from chunk `first` to the last (lap 1), then from the first up to
    it (lap 2), then whatever was added after lap 1's last id meanwhile (lap 3:
    portfolios created during the run, which a walk from the lowest id would
    also have met at its end)."""

    def __init__(self, pool: asyncpg.Pool, filter_ids: list[int] | None, size: int, link: _Link,
                 first: int = 0, day: date | None = None) -> None:
        self.pool, self.filter_ids, self.size, self.link = pool, filter_ids, size, link
        self.day = day                       # count the chunk's chains that end on this date
        self.first = first
        self.last_id = 0
        self.upper: int | None = None        # stop before this id (the second lap); None: go to the last id
        self.start_id: int | None = None     # where the first lap started (None: at the lowest id)
        self.lap = 1
        self.lap_1_end = 0                   # the last id lap 1 handed out
        self.started = first == 0
        self.lock = asyncio.Lock()

    async def next(self) -> ChunkListing:
        """The next chunk's ids, and where their chains end (ChunkListing); no ids
        at the end, or when the run is over (the server stayed away: link.gone)."""
        listing = ChunkListing([])

        async def fetch() -> None:
            nonlocal listing
            async with self.pool.acquire() as conn, planned_transaction(conn):
                row = await conn.fetchrow(sql("batch/list_portfolio_chunk"), self.last_id, self.filter_ids,
                                          self.size, self.upper, self.day)
            listing = ChunkListing.of(row)

        async def find_start() -> None:
            async with self.pool.acquire() as conn:
                self.start_id = await conn.fetchval(sql("batch/portfolio_id_at"), self.filter_ids,
                                                    self.first * self.size)

        async with self.lock:
            if not self.started:
                await self.link.step(find_start)
                self.started = self.link.gone is None
                if self.start_id is not None:     # (None: the book shrank meanwhile; walk it from the lowest)
                    self.last_id = self.start_id - 1
            await self.link.step(fetch)
            if not listing.ids and self.start_id is not None and self.lap == 1 and self.link.gone is None:
                self.lap, self.lap_1_end = 2, self.last_id
                self.last_id, self.upper = 0, self.start_id       # the chunks before the first one
                await self.link.step(fetch)
            if not listing.ids and self.lap == 2 and self.link.gone is None:
                self.lap = 3
                self.last_id, self.upper = self.lap_1_end, None   # ids added since lap 1 passed the end
                await self.link.step(fetch)
            if listing.ids:
                self.last_id = listing.ids[-1]
            return listing


async def _main_pass(pool: asyncpg.Pool, result: RunResult, filter_ids: list[int] | None, opts: BatchOptions,
                     on_progress: ProgressFn | None, stop: asyncio.Event | None, workers: int, link: _Link) -> None:
    chunks = _Chunks(pool, filter_ids, opts.chunk_size, link,
                     starting_chunk(result.run_id, -(-result.total // opts.chunk_size)), result.date)
    done = 0
    every = min(PROGRESS_EVERY_S, opts.lease.total_seconds() / 3)

    async def worker() -> None:
        nonlocal done
        while not (stop and stop.is_set()) and link.gone is None:
            listing = await chunks.next()
            ids = listing.ids
            if not ids:
                return
            await _process_chunk(pool, result, ids, [result.start] * len(ids), False, opts, link,
                                 listing.plan(result.date, result.start, result.report_from))
            done += len(ids)
            await _heartbeat(pool, result, every)
            if on_progress:
                on_progress(done, result.total)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def _settle_lost(pool: asyncpg.Pool, result: RunResult) -> None:
    """Claims we lost to another run: finished by it (stay 'lost'), or not yet:
    then that run holds them, and they are held."""
    if not result.lost_slots:
        return
    slots = result.lost_slots
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql("batch/find_unfinished_slots"), [p for p, _ in slots], [d for _, d in slots])
    result.lost_slots = []
    for r in rows:
        result.tally(r["snapshot_date"]).lost -= 1
        result.hold(r["portfolio_id"], [r["snapshot_date"]])


async def _revisit(pool: asyncpg.Pool, result: RunResult, opts: BatchOptions, stop: asyncio.Event | None,
                   workers: int, link: _Link) -> None:
    """Look again at the held slots: done by their holder by now (already done),
    free or expired (ours now: computed), or still held."""
    floors, result.revisit = result.revisit, {}
    for t in result.tallies.values():
        t.held = 0
    pids = sorted(floors)
    queue = [pids[i:i + opts.chunk_size] for i in range(0, len(pids), opts.chunk_size)]

    async def worker() -> None:
        while queue and not (stop and stop.is_set()) and link.gone is None:
            ids = queue.pop(0)
            await _process_chunk(pool, result, ids, [floors[p] for p in ids], True, opts, link)
            await _heartbeat(pool, result)

    await asyncio.gather(*(worker() for _ in range(workers)))
    for pid in (p for chunk in queue for p in chunk):     # not revisited (stopping): still held
        result.hold(pid, [d for d in sorted(result.tallies) if d >= floors[pid]])


async def _sleep(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


HOLE_REASON = ("no snapshot on {day}, but its chain goes on after it: a later date was computed across {day} "
               "(its closes arrived late, or the snapshot was deleted), and runs only extend chains; rebuild "
               "from there: pnl batch undo --from {day} --portfolio {pid}, then run again (a stray close that "
               "made {day} a price date: delete it from market_prices instead)")


def holes_may_hide_on(result: RunResult) -> list[date]:
    """The run's report dates (asked for) that it counts already done for someone."""
    asked = set(result.report_dates)
    return [r.day for r in result.dates() if r.day in asked and r.already_done > 0]


async def _report_holes(pool: asyncpg.Pool, result: RunResult, filter_ids: list[int] | None) -> None:
    """The dates the operator asked for (a backfill's price dates, `--date D`: the run's
    report dates) that a selected chain skips (sql/batch/find_chain_holes.sql) are
    failed, with the way out, not counted already done. Only such a date the run
    counts already done can hide one (a date it wrote or failed is no hole), and
    none on or after the latest price date can: the daily run reads no snapshot
    for it, also while some portfolio catches up (its catch-up dates are not
    report dates; `pnl verify` names holes anywhere). A stopped run skips it: it
    has not reached every portfolio."""
    if result.error is not None:
        return
    days = holes_may_hide_on(result)
    if not days:
        return
    async with pool.acquire() as conn, planned_transaction(conn):   # probes by index, whatever the statistics
        rows = await conn.fetch(sql("batch/find_chain_holes"), filter_ids, days)
    for r in rows:
        dates = list(r["dates"])
        result.fail(r["portfolio_id"], dates,
                    HOLE_REASON.format(day=dates[0].isoformat(), pid=r["portfolio_id"]))


async def _finish_held(pool: asyncpg.Pool, result: RunResult, opts: BatchOptions, stop: asyncio.Event | None,
                       workers: int, link: _Link) -> None:
    """After the pass: look at held slots again once; with opts.wait keep looking
    (taking over what expires) until none is left or one lease has passed."""
    await _settle_lost(pool, result)
    if result.revisit and not (stop and stop.is_set()):
        await _revisit(pool, result, opts, stop, workers, link)
        await _settle_lost(pool, result)
    started = time.monotonic()
    deadline = started + opts.lease.total_seconds()
    poll = WAIT_POLL_S[0]
    while opts.wait and result.revisit and not (stop and stop.is_set()) and link.gone is None:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await _sleep(min(poll, left), stop)
        poll = min(poll * 2, WAIT_POLL_S[1])
        await _heartbeat(pool, result)
        if stop and stop.is_set():
            break
        await _revisit(pool, result, opts, stop, workers, link)
        await _settle_lost(pool, result)
    result.waited = time.monotonic() - started if opts.wait else 0.0
    for last_look in (False, True):
        if not result.revisit or link.gone is not None:
            break
        pids = sorted(result.revisit)
        async with pool.acquire() as conn:
            rows = await conn.fetch(sql("batch/list_holders"), result.run_id, result.date, pids)
        result.holders = [Holder(r["batch_run_id"], r["claims"], r["first_date"], r["last_date"],
                                 r["lease_expires_at"], r["host"], r["pid"]) for r in rows]
        if rows or last_look or (stop and stop.is_set()):
            break
        # Nobody holds them any more: their holders finished between the revisit and now. Look once more.
        await _revisit(pool, result, opts, stop, workers, link)
        await _settle_lost(pool, result)


async def run_range(
    pool: asyncpg.Pool,
    last: date,
    start: date | None = None,
    opts: BatchOptions = BatchOptions(),
    on_progress: ProgressFn | None = None,
    stop: asyncio.Event | None = None,
    workers: int = 1,
    report_dates: tuple[date, ...] = (),
) -> RunResult:
    """One run up to `last` (a price date, already checked): for every selected
    portfolio, every price date after its latest complete snapshot (from `start`,
    default `last`, for a portfolio without one), in date order.

    `workers` chunks are in flight at once, each on its own connection (the
    pool needs workers + 1 connections). `stop`, once set, ends the run after
    the chunks in flight ('interrupted').
    """
    started = time.monotonic()
    start = start or last
    async with pool.acquire() as conn:     # before anything is written: StalePrices refuses the run
        prices = await check_prices(conn, last, start, opts)
    last = prices.last
    report_dates = tuple(d for d in report_dates if d <= last) or (last,)
    result, filter_ids = await _start(pool, last, start, opts, report_dates,
                                      prices.report_from(start, report_dates))
    link = _Link(pool, result, opts.reconnect, stop)

    async def mark_abandoned() -> None:
        # A run we waited for (or took over) may have died meanwhile: say so now.
        async with pool.acquire() as conn:
            result.abandoned_runs += [r["id"] for r in await conn.fetch(sql("runs/mark_abandoned"))]

    try:
        await link.step(lambda: _fix_run_marks(pool, result, prices))
        await _main_pass(pool, result, filter_ids, opts, on_progress, stop, workers, link)
        await link.step(lambda: _finish_held(pool, result, opts, stop, workers, link))
        if not (stop and stop.is_set()):
            await link.step(lambda: _report_holes(pool, result, filter_ids))
        await link.step(mark_abandoned)
        result.status = _status(result, bool(stop and stop.is_set()))
    except BaseException:
        result.status = "interrupted" if stop and stop.is_set() else "failed"
        result.seconds = time.monotonic() - started
        try:
            await asyncio.shield(_record(pool, result, final=True))
        except BaseException:  # best effort: the run is already failing
            pass
        raise
    result.seconds = time.monotonic() - started
    await _record_end(pool, link, result)
    return result


async def _record_end(pool: asyncpg.Pool, link: _Link, result: RunResult) -> None:
    """Give back the claims failed chunks could not, and record the outcome.
    A server that is away is waited for once more (one reconnect window; the
    outcome is recorded as soon as it answers). If it stays away, the result
    says so: the batch_runs row stays 'running' until a later run marks it
    abandoned, and those claims expire with their lease."""
    for last_try in (False, True):
        try:
            if result.unreleased:
                async with pool.acquire() as conn:
                    await release_claims(conn, result.run_id, result.unreleased)
                result.unreleased.clear()
            await _record(pool, result, final=True)
            return
        except DB_FAULTS as exc:
            if last_try or not is_connection_fault(exc) or await link.wait_for_server(exc) is not None:
                left = (f"; {len(result.unreleased)} portfolio(s)' claims expire with their lease"
                        if result.unreleased else "")
                result.error = (f"{result.error + '; ' if result.error else ''}could not record the run's end "
                                f"({_first_line(exc)}): batch_runs #{result.run_id} stays 'running' until a "
                                f"later run marks it abandoned{left}")
                return


async def run(pool: asyncpg.Pool, day: DayRequest | date | str, opts: BatchOptions = BatchOptions(),
              on_progress: ProgressFn | None = None, stop: asyncio.Event | None = None,
              workers: int = 1) -> RunResult:
    """`pnl batch run --date DAY`: DAY must be a price date not after today (the
    database's clock; `latest` is the latest such date), else BadInput and
    nothing is written. Then the catch-up up to DAY (see run_range)."""
    async with pool.acquire() as conn:
        last = await resolve_run_date(conn, DayRequest.of(day))
    return await run_range(pool, last, last, opts, on_progress, stop, workers)


@dataclass(frozen=True)
class BackfillResult:
    first: date
    last: date
    price_dates: list[date]
    run: RunResult | None             # None: no price date in the range, nothing to run

    def to_json(self) -> dict:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(),
                "price_dates": len(self.price_dates),
                "run": self.run.to_json() if self.run else None}


async def backfill(
    pool: asyncpg.Pool,
    first: DayRequest | date | str,
    last: DayRequest | date | str,
    opts: BatchOptions = BatchOptions(),
    on_progress: ProgressFn | None = None,
    stop: asyncio.Event | None = None,
    workers: int = 1,
) -> BackfillResult:
    """`pnl batch backfill --from F --to T`: ONE run up to the last price date in
    [F, T]; portfolios without a snapshot start at F, the others catch up from
    their latest complete snapshot. Dates before a portfolio's first snapshot
    are before_chain (not computed; `undo` rebuilds history from earlier)."""
    async with pool.acquire() as conn:
        rng = await resolve_range(conn, DayRequest.of(first), DayRequest.of(last))
    if not rng.dates:
        return BackfillResult(rng.first, rng.last, [], None)
    result = await run_range(pool, rng.dates[-1], rng.first, opts, on_progress, stop, workers,
                             report_dates=tuple(rng.dates))
    return BackfillResult(rng.first, rng.last, rng.dates, result)
