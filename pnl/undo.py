"""Undo: remove every complete snapshot on or after a date, archived, and put
equity back to what it was before that date; or restore an undo exactly.

Used to rebuild history from an earlier date (a portfolio's chain started
later than it should have: `undo --from D`, then `backfill --from D`), or to
take back a run over wrong data. Nothing is lost: every removed row is
archived whole (jsonb) in snapshot_undo_audit under the undo's run id (a
rescue_runs row of kind 'undo') with the portfolio's equity before the undo,
and `restore(run_id)` puts rows and equity back exactly. Re-running the dates
after an undo computes the same numbers (a day's opening is the previous NAV).

One transaction per chunk of portfolios: the chunk's portfolio rows are locked
(as the batch's finalize does), live claims on or after the date are refused,
then one statement removes, archives and sets equity. A dry run executes the
very same statements and rolls each chunk back.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from pnl.calendar import DayRequest, resolve_day
from pnl.db import planned_transaction, use_dry_run_copies
from pnl.errors import BadInput, PnlError
from pnl.queries import sql


class _DryRunDone(Exception):
    """Raised to roll back a dry run's chunk transaction."""


@dataclass(frozen=True)
class EquityChange:
    portfolio_id: int
    before: Decimal
    after: Decimal


@dataclass(frozen=True)
class LiveClaims:
    run_id: int | None
    claims: int
    lease_expires_at: datetime
    host: str | None = None
    pid: int | None = None


async def processes_gone(conn: asyncpg.Connection, runs: list[tuple[str | None, int | None]]) -> set[int]:
    """The pids of these (host, pid) runs that are dead for certain: started on this
    host, no such process here, and no session of it on the server (a machine or
    container sharing the host name would still have one)."""
    candidates = {pid for host, pid in runs if pid and process_gone_here(host, pid)}
    if not candidates:
        return set()
    connected = {r["application_name"] for r in
                 await conn.fetch(sql("runs/connected_processes"), [f"pnl/{p}" for p in candidates])}
    return {p for p in candidates if f"pnl/{p}" not in connected}


def process_gone_here(host: str | None, pid: int | None) -> bool:
    """True when a run was started on this host and its process no longer
    exists here (killed, OOM). A pid that exists again (reused) counts as alive:
    the safe side. Alone it cannot tell a machine or container that shares the
    host name: processes_gone also asks the server for the process's sessions."""
    if host != socket.gethostname() or not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False                      # it exists (another user's process)
    return False


@dataclass
class UndoResult:
    from_date: date
    dry_run: bool
    run_id: int | None = None             # the undo's rescue run (None for a dry run)
    per_date: Counter[date] = field(default_factory=Counter)
    equity: list[EquityChange] = field(default_factory=list)
    # batch runs found dead on this host (process gone): marked abandoned and their claims
    # released instead of waiting out their lease (a dry run only names them: "would be")
    dead_runs: list[int] = field(default_factory=list)
    # older undo runs, killed or failed part-way, that this one completed (marked done)
    settled_undos: list[int] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return sum(self.per_date.values())

    def to_json(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            "from": self.from_date.isoformat(),
            "removed": self.removed,
            "portfolios": len(self.equity),
            "dates": [{"date": d.isoformat(), "snapshots": n} for d, n in sorted(self.per_date.items())],
            "equity": [{"portfolio_id": e.portfolio_id, "before": str(e.before), "after": str(e.after)}
                       for e in self.equity],
            "dead_runs": self.dead_runs,
            "interrupted_undos_completed": self.settled_undos,
        }


@dataclass(frozen=True)
class RestoreResult:
    run_id: int
    restored: int
    portfolios: int

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "restored": self.restored, "portfolios": self.portfolios}


def _claims_message(claims: list[LiveClaims], day: date) -> str:
    here = socket.gethostname()
    runs = ", ".join(f"run #{c.run_id} ("
                     + (f"{c.claims} claim(s), lease until" if c.claims else "running, alive until at least")
                     + f" {c.lease_expires_at:%Y-%m-%d %H:%M:%S%z}"
                     + (f", on host {c.host}" if c.host and c.host != here else "") + ")" for c in claims[:5])
    more = f" and {len(claims) - 5} more run(s)" if len(claims) > 5 else ""
    return (f"refused: runs are computing dates on or after {day} (running, or holding unfinished claims on "
            f"these portfolios): {runs}{more}; undo would remove dates under them. Let them finish (or, for "
            "a run on another host that died, wait for its lease to end: a dead run on this host is noticed "
            "once the server has ended its sessions), then undo again")


async def _live_claims(conn: asyncpg.Connection, day: date, ids: list[int] | None,
                       ignore: frozenset[int] = frozenset()) -> list[LiveClaims]:
    return [LiveClaims(r["batch_run_id"], r["claims"], r["lease_expires_at"], r["host"], r["pid"])
            for r in await conn.fetch(sql("undo/list_live_claims"), day, ids)
            if r["batch_run_id"] not in ignore]


async def _settle_dead_runs(conn: asyncpg.Connection, day: date, ids: list[int] | None,
                            result: UndoResult) -> list[LiveClaims]:
    """The runs that block the undo, after the dead ones of this host are dealt
    with: abandoned, their claims released (a dry run only names them)."""
    claims = await _live_claims(conn, day, ids)
    gone = await processes_gone(conn, [(c.host, c.pid) for c in claims if c.run_id is not None])
    dead = [c.run_id for c in claims if c.run_id is not None and c.pid in gone]
    if not dead:
        return claims
    result.dead_runs = dead
    if not result.dry_run:
        await conn.fetch(sql("runs/abandon_dead_runs"), dead, socket.gethostname())
    return [c for c in claims if c.run_id not in dead]     # each chunk looks again, under its locks


async def _undo_chunk(conn: asyncpg.Connection, run_id: int | None, ids: list[int], day: date,
                      result: UndoResult, dry_run: bool) -> None:
    try:
        async with planned_transaction(conn):
            if dry_run:  # the same statements, on temporary copies: needs no write privilege
                await use_dry_run_copies(conn, "dryrun/copy_portfolios", ids)
            await conn.fetch(sql("batch/lock_portfolios"), ids)
            claims = await _live_claims(conn, day, ids, ignore=frozenset(result.dead_runs))
            if claims:
                raise PnlError(_claims_message(claims, day))
            row = await conn.fetchrow(sql("undo/remove_snapshots"), run_id, ids, day)
            result.per_date.update(dict(zip(row["dates"], row["counts"], strict=True)))
            result.equity += [EquityChange(p, b, a) for p, b, a in
                              zip(row["equity_ids"], row["equity_before"], row["equity_after"], strict=True)]
            if dry_run:
                raise _DryRunDone
    except _DryRunDone:
        pass


async def undo(pool: asyncpg.Pool, from_day: DayRequest | date | str, portfolio_ids: tuple[int, ...] | None,
               dry_run: bool, chunk_size: int = 5000,
               on_progress: Callable[[int, int], None] | None = None) -> UndoResult:
    """Remove every complete snapshot on or after the date of the selected
    portfolios (default all), archived; equity back to before the date."""
    ids = sorted(set(portfolio_ids)) if portfolio_ids else None
    async with pool.acquire() as conn:
        day = await resolve_day(conn, DayRequest.of(from_day))
        if ids is not None:
            unknown = [r["id"] for r in await conn.fetch(sql("batch/find_unknown_portfolios"), ids)]
            if unknown:
                raise BadInput(f"unknown portfolio id(s): {', '.join(map(str, unknown))}")
        result = UndoResult(from_date=day, dry_run=dry_run)
        claims = await _settle_dead_runs(conn, day, ids, result)
        if claims:
            raise PnlError(_claims_message(claims, day))
        total = await conn.fetchval(sql("batch/count_portfolios"), ids)
        if not dry_run:
            result.run_id = await conn.fetchval(sql("rescue/start_rescue_run"), "undo", socket.gethostname(),
                                                os.getpid())
            await conn.execute(sql("undo/record_undo_scope"), result.run_id, day, ids)
        last_id, done = 0, 0
        while True:
            chunk = list(await conn.fetchval(sql("batch/list_portfolio_chunk"), last_id, ids, chunk_size, None,
                                               None))
            if not chunk:
                break
            last_id = chunk[-1]
            try:
                await _undo_chunk(conn, result.run_id, chunk, day, result, dry_run)
            except PnlError as exc:
                if result.run_id is not None:
                    await _finish(conn, result, "failed")
                done_note = (f" (undo run #{result.run_id} had already removed {result.removed} snapshot(s) of "
                             f"earlier portfolios: run it again to finish, or `pnl batch undo --restore "
                             f"{result.run_id}`)") if result.removed else ""
                raise PnlError(f"{exc}{done_note}") from None
            done += len(chunk)
            if on_progress:
                on_progress(done, total)
        if result.run_id is not None:
            await _finish(conn, result, "done")
            result.settled_undos = await _settle_interrupted(conn, result.run_id, day, ids)
    return result


async def _settle_interrupted(conn: asyncpg.Connection, run_id: int, day: date, ids: list[int] | None) -> list[int]:
    """Older undo runs that were killed or failed part-way and that this one
    completed (asked from `day` for `ids`, at least their from date and scope):
    marked done (finished_by), no longer UNFINISHED in status. One still
    running elsewhere, or whose process lives, is left alone."""
    rows = await conn.fetch(sql("undo/list_interrupted_undos"), run_id)
    gone = await processes_gone(conn, [(r["host"], r["pid"]) for r in rows if r["status"] == "running"])
    ended = [r["id"] for r in rows if r["status"] == "failed" or r["pid"] in gone]
    if not ended:
        return []
    return [r["id"] for r in await conn.fetch(sql("undo/settle_interrupted_undos"), run_id, ended, day, ids)]


async def _finish(conn: asyncpg.Connection, result: UndoResult, status: str) -> None:
    summary = {"from": result.from_date.isoformat(), "removed": result.removed, "portfolios": len(result.equity)}
    await conn.execute(sql("rescue/finish_rescue_run"), result.run_id, status, json.dumps(summary))


MAX_SCOPE_SHOWN = 10


def _scope_args(summary: object, refilled: list[asyncpg.Record]) -> str:
    """The --portfolio options that undo the refilled dates of only the portfolios the
    undo run was for: none when it was for every portfolio (or its scope was not recorded)."""
    scope = (json.loads(summary) if isinstance(summary, str) else summary or {}).get("scope")
    if not scope:
        return ""
    pids = sorted({int(r["portfolio_id"]) for r in refilled})
    shown = " ".join(f"--portfolio {p}" for p in pids[:MAX_SCOPE_SHOWN])
    return f" {shown}" + (f" ... ({len(pids)} portfolios in all)" if len(pids) > MAX_SCOPE_SHOWN else "")


async def restore(pool: asyncpg.Pool, run_id: int) -> RestoreResult:
    """Put back every snapshot undo run `run_id` removed, and the equity it
    changed; refuses if a newer undo of the same portfolios is not restored
    yet (newest first), or if any of those slots holds a row again."""
    async with pool.acquire() as conn:
        run = await conn.fetchrow(sql("rescue/get_rescue_run"), run_id)
        if run is None or run["kind"] != "undo":
            raise BadInput(f"no undo run #{run_id} (see rescue_runs, kind 'undo')")
        async with conn.transaction():
            pids = [r["portfolio_id"] for r in await conn.fetch(sql("undo/list_undo_portfolios"), run_id)]
            if not pids:
                raise PnlError(f"nothing to restore: undo run #{run_id} is already restored (or removed nothing)")
            await conn.fetch(sql("batch/lock_portfolios"), pids)
            later = await conn.fetch(sql("undo/find_later_undos"), run_id)
            if later:
                newest = later[0]
                runs = ", ".join(f"#{r['rescue_run_id']}" for r in later)
                raise PnlError(
                    f"refused: undo run(s) {runs}, newer than #{run_id}, removed earlier snapshots of the same "
                    f"portfolios (e.g. portfolio {newest['example_portfolio_id']}) and are not restored; such undo "
                    f"runs are restored "
                    f"newest first: pnl batch undo --restore {newest['rescue_run_id']} --yes, then this one; "
                    "nothing was changed")
            refilled = await conn.fetch(sql("undo/find_refilled_slots"), run_id)
            if refilled:
                first = refilled[0]
                what = "a snapshot" if first["is_complete"] else "a claim"
                raise PnlError(
                    f"refused: {len(refilled)} slot(s) of the portfolios undo run #{run_id} changed were filled "
                    f"again since (e.g. portfolio {first['portfolio_id']} on {first['snapshot_date']} has {what}); "
                    f"restoring would overwrite them. Undo those dates first (pnl batch undo --from "
                    f"{min(r['snapshot_date'] for r in refilled)}{_scope_args(run['summary'], refilled)}), then "
                    "restore; nothing was changed")
            row = await conn.fetchrow(sql("undo/restore_snapshots"), run_id)
            await conn.execute(sql("rescue/finish_rescue_run"), run_id, "restored",
                               json.dumps({"restored": row["restored"]}))
    return RestoreResult(run_id, row["restored"], row["portfolios"])
