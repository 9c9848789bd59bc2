"""Repair: replay a portfolio's chain from a good anchor with the batch's rules.

Everything happens in ONE transaction: archive the old rows, reopen them as
claims of a repair run, finalize them date by date with the batch's own
finalize statement (so a repaired chain is exactly what the batch computes),
set equity. A dry run does the same and rolls back, so the old-vs-new report
is exactly what a real repair would write.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import asyncpg

from pnl.batch import finalize_chunk
from pnl.db import use_dry_run_copies
from pnl.errors import BadInput, PnlError
from pnl.queries import sql
from pnl.verify import flagged_chain_portfolios


class _DryRunDone(Exception):
    """Raised to roll back a dry run's transaction."""


@dataclass(frozen=True)
class Change:
    portfolio_id: int
    snapshot_date: date
    old_nav: Decimal | None
    new_nav: Decimal | None


@dataclass
class RepairResult:
    dry_run: bool
    rescue_run_id: int | None = None
    changes: list[Change] = field(default_factory=list)
    equity: dict[int, tuple[Decimal, Decimal]] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return sum(1 for c in self.changes if c.old_nav != c.new_nav)

    def to_json(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "rescue_run_id": self.rescue_run_id,
            "snapshots": len(self.changes),
            "changed": self.changed,
            "changes": [{"portfolio_id": c.portfolio_id, "date": c.snapshot_date.isoformat(),
                         "old_nav": str(c.old_nav), "new_nav": str(c.new_nav)} for c in self.changes],
            "equity": [{"portfolio_id": pid, "old": str(old), "new": str(new)}
                       for pid, (old, new) in sorted(self.equity.items())],
        }


async def _check_anchors(conn: asyncpg.Connection, targets: dict[int, date]) -> None:
    pids = sorted(targets)
    rows = await conn.fetch(sql("repair/find_anchors"), pids, [targets[p] for p in pids])
    problems = []
    for r in rows:
        if not r["known"]:
            problems.append(f"portfolio {r['portfolio_id']} does not exist")
        elif r["to_replay"] == 0:
            problems.append(f"portfolio {r['portfolio_id']} has no snapshot on or after {r['from_date']}")
        elif r["anchor_date"] is None:
            problems.append(f"portfolio {r['portfolio_id']} has no complete snapshot before {r['from_date']} "
                            "to anchor the replay on; repair from a later date")
    if problems:
        raise BadInput("; ".join(problems))


async def repair(pool: asyncpg.Pool, targets: dict[int, date], dry_run: bool,
                 on_progress: Callable[[int, int], None] | None = None,
                 expect: list[Change] | None = None) -> RepairResult:
    """Replay each portfolio in `targets` from its date; one transaction for all.
    on_progress(dates done, dates in all) after each date is recomputed. With
    `expect` (a preview's changes) the repair commits only if it wrote exactly
    those NAVs; otherwise it rolls back and raises PnlError."""
    if not targets:
        return RepairResult(dry_run=dry_run)
    result = RepairResult(dry_run=dry_run)
    pids = sorted(targets)
    async with pool.acquire() as conn:
        await _check_anchors(conn, targets)
        try:
            async with conn.transaction():
                if dry_run:  # the same statements, on temporary copies: needs no write privilege
                    await use_dry_run_copies(conn, "dryrun/copy_portfolios", pids)
                await _replay(conn, targets, pids, result, on_progress)
                if expect is not None and result.changes != expect:
                    raise PnlError("the data changed since the repair was previewed, so it would now write other "
                                   "NAVs than the ones shown; nothing was changed: run the repair again")
                if dry_run:
                    raise _DryRunDone
        except _DryRunDone:
            result.rescue_run_id = None
    return result


async def _replay(conn: asyncpg.Connection, targets: dict[int, date], pids: list[int],
                  result: RepairResult, on_progress: Callable[[int, int], None] | None) -> None:
    host, pid = socket.gethostname(), os.getpid()
    rescue_id = await conn.fetchval(sql("rescue/start_rescue_run"), "repair", host, pid)
    token = (await conn.fetchrow(sql("runs/start_run"), min(targets.values()), host, pid))["id"]
    equity_before = {r["id"]: r["equity_balance"] for r in await conn.fetch(sql("repair/get_equity"), pids)}
    reopened = await conn.fetch(sql("repair/archive_and_reopen_snapshots"), rescue_id, token, pids,
                                [targets[p] for p in pids])
    old = {(r["portfolio_id"], r["snapshot_date"]): r["old_nav"] for r in reopened}
    by_date: dict[date, list[int]] = {}
    for (p, d) in old:
        by_date.setdefault(d, []).append(p)
    for n, day in enumerate(sorted(by_date), 1):
        fin = await finalize_chunk(conn, token, day, sorted(by_date[day]))
        if on_progress:
            on_progress(n, len(by_date))
        if fin.failed or fin.lost:
            why = "; ".join(f"portfolio {f.portfolio_id}: {f.reason}" for f in fin.failed) or \
                f"claims lost for {fin.lost}"
            raise PnlError(f"repair stopped at {day} and changed nothing: {why}")
    new = {(r["portfolio_id"], r["snapshot_date"]): r["net_asset_value"]
           for r in await conn.fetch(sql("repair/list_repaired_snapshots"), token)}
    result.changes = [Change(p, d, old[(p, d)], new.get((p, d))) for (p, d) in sorted(old)]
    equity_after = {r["id"]: r["equity_balance"] for r in await conn.fetch(sql("repair/get_equity"), pids)}
    result.equity = {p: (equity_before[p], equity_after[p]) for p in pids}
    await conn.execute(sql("runs/finish_run"), token, "succeeded", len(old), 0, 0, 0, 0, "[]")
    summary = {"portfolios": len(pids), "snapshots": len(old), "changed": result.changed, "batch_run_id": token}
    await conn.execute(sql("rescue/finish_rescue_run"), rescue_id, "done", json.dumps(summary))
    result.rescue_run_id = rescue_id


@dataclass(frozen=True)
class RepairPlan:
    """What a repair will do: which portfolios from which date, and the NAVs it
    will write (a dry run). apply_repair writes exactly these or nothing."""

    targets: dict[int, date]
    preview: RepairResult


async def plan_repair(pool: asyncpg.Pool, portfolios: Sequence[int] = (), from_date: date | None = None,
                      all_broken: bool = False) -> RepairPlan:
    """Pick the targets (the given portfolios from `from_date`, or every portfolio
    the chain and equity checks flag, from its first broken date) and preview."""
    if all_broken == bool(portfolios) or (portfolios and from_date is None):
        raise BadInput("repair needs portfolios and a from date, or all_broken")
    if all_broken:
        async with pool.acquire() as conn:
            targets = {p: d for p, (d, _) in (await flagged_chain_portfolios(conn)).items()}
    else:
        targets = {p: from_date for p in portfolios}  # type: ignore[misc]
    preview = await repair(pool, targets, dry_run=True) if targets else RepairResult(dry_run=True)
    return RepairPlan(targets, preview)


async def apply_repair(pool: asyncpg.Pool, plan: RepairPlan,
                       on_progress: Callable[[int, int], None] | None = None) -> RepairResult:
    """Apply a plan: the same targets, committed only if the NAVs are the previewed ones."""
    if not plan.targets:
        return RepairResult(dry_run=False)
    return await repair(pool, plan.targets, dry_run=False, on_progress=on_progress, expect=plan.preview.changes)
