"""Repair: replay a portfolio's chain from a good anchor with the batch's rules,
and re-fix valuation marks that market_prices no longer agrees with.

The anchor is the portfolio's latest complete snapshot before the repair date
(its NAV is trusted); a portfolio with none is anchored on the opening equity
of its earliest snapshot in the range (a legacy row without one: NAV -
daily_pnl - capital flow), so there is no dead end.

Everything happens in ONE transaction: archive the old rows, reopen them as
claims of a repair run, finalize them date by date with the batch's own
finalize statement (so a repaired chain is exactly what the batch computes),
set equity. A portfolio that cannot be replayed (no snapshot to replay, no
derivable opening, a missing price on the way) is left out and listed; the
others are repaired (the attempt is rolled back to a savepoint and made again
without it). A dry run does the same and rolls back, so the old-vs-new report
is exactly what a real repair would write.

Marks: a close corrected (or arrived) after its date ran leaves that date's
valuation mark different from market_prices (sql/verify/
marks_differ_from_prices.sql). A marks repair (`--from D` alone, or
`--all-broken`) re-fixes those marks from market_prices inside the same
transaction (the old ones archived in valuation_mark_repair_audit) and replays
every portfolio that held the symbol on that date. Every replayed date's marks
are fixed first (ON CONFLICT DO NOTHING: a legacy date without marks gets
them), so the replay reads marks exactly as the batch does.
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

from pnl.batch import finalize_chunk, fix_marks, reason
from pnl.calendar import DayRequest, resolve_day
from pnl.db import use_dry_run_copies
from pnl.errors import BadInput, PnlError
from pnl.queries import sql
from pnl.verify import MarkDiff, differing_marks, flagged_chain_portfolios


class _DryRunDone(Exception):
    """Raised to roll back a dry run's transaction."""


class _ReplayRefused(Exception):
    """Some portfolios could not be replayed: roll back the attempt, retry without them."""

    def __init__(self, refused: dict[int, str]) -> None:
        super().__init__(f"{len(refused)} portfolio(s) refused")
        self.refused = refused


@dataclass(frozen=True)
class Change:
    portfolio_id: int
    snapshot_date: date
    old_nav: Decimal | None
    new_nav: Decimal | None


@dataclass(frozen=True)
class Refusal:
    portfolio_id: int
    reason: str


@dataclass(frozen=True)
class Anchor:
    portfolio_id: int
    from_date: date
    kind: str                  # 'snapshot' (NAV before from) | 'opening' | 'derived_opening'
    anchor_date: date
    equity: Decimal            # the NAV, or the opening equity the replay starts from


@dataclass(frozen=True)
class MarkFix:
    """A valuation mark re-fixed from market_prices (the old one archived)."""

    mark_date: date
    symbol: str
    old_close: Decimal
    new_close: Decimal
    new_price_date: date


@dataclass
class RepairResult:
    dry_run: bool
    rescue_run_id: int | None = None
    changes: list[Change] = field(default_factory=list)
    equity: dict[int, tuple[Decimal, Decimal]] = field(default_factory=dict)
    anchors: list[Anchor] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    marks: list[MarkFix] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(1 for c in self.changes if c.old_nav != c.new_nav)

    def to_json(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "rescue_run_id": self.rescue_run_id,
            "portfolios": len(self.equity),
            "snapshots": len(self.changes),
            "changed": self.changed,
            "changes": [{"portfolio_id": c.portfolio_id, "date": c.snapshot_date.isoformat(),
                         "old_nav": str(c.old_nav), "new_nav": str(c.new_nav)} for c in self.changes],
            "equity": [{"portfolio_id": pid, "old": str(old), "new": str(new)}
                       for pid, (old, new) in sorted(self.equity.items())],
            "anchors": [{"portfolio_id": a.portfolio_id, "from": a.from_date.isoformat(), "kind": a.kind,
                         "date": a.anchor_date.isoformat(), "equity": str(a.equity)} for a in self.anchors],
            "refused": [{"portfolio_id": r.portfolio_id, "reason": r.reason} for r in self.refused],
            "marks": [{"date": m.mark_date.isoformat(), "symbol": m.symbol, "old_close": str(m.old_close),
                       "new_close": str(m.new_close), "new_price_date": m.new_price_date.isoformat()}
                      for m in self.marks],
        }


async def _anchors(conn: asyncpg.Connection, targets: dict[int, date],
                   unknown_is_bad_input: bool) -> tuple[list[Anchor], list[Refusal]]:
    pids = sorted(targets)
    rows = await conn.fetch(sql("repair/find_anchors"), pids, [targets[p] for p in pids])
    unknown = [r["portfolio_id"] for r in rows if not r["known"]]
    if unknown and unknown_is_bad_input:
        raise BadInput(f"portfolio(s) {', '.join(map(str, unknown))} do not exist")
    anchors, refused = [], []
    for r in rows:
        pid, since = r["portfolio_id"], r["from_date"]
        if not r["known"]:
            refused.append(Refusal(pid, "does not exist"))
        elif r["to_replay"] == 0 or r["first_date"] is None:
            refused.append(Refusal(pid, f"has no complete snapshot on or after {since}: nothing to replay"))
        elif r["anchor_date"] is not None:
            anchors.append(Anchor(pid, since, "snapshot", r["anchor_date"], r["anchor_nav"]))
        elif r["first_opening"] is None:
            refused.append(Refusal(pid, f"has no complete snapshot before {since}, and its first one "
                                        f"({r['first_date']}) has neither an opening equity nor a NAV and "
                                        "daily P&L to derive one from"))
        else:
            kind = "derived_opening" if r["first_opening_derived"] else "opening"
            anchors.append(Anchor(pid, since, kind, r["first_date"], r["first_opening"]))
    return anchors, refused


async def repair(pool: asyncpg.Pool, targets: dict[int, date], dry_run: bool,
                 on_progress: Callable[[int, int], None] | None = None,
                 unknown_is_bad_input: bool = True, expect: list[Change] | None = None,
                 marks: Sequence[MarkDiff] = ()) -> RepairResult:
    """Replay each portfolio in `targets` from its date, in one transaction,
    after re-fixing `marks` from market_prices (archived). Portfolios that
    cannot be replayed are listed in `refused`; the rest are repaired.
    on_progress(dates done, dates in all) after each date. With `expect` (a
    preview's changes) the repair commits only if it wrote exactly those NAVs;
    otherwise it rolls back and raises PnlError."""
    result = RepairResult(dry_run=dry_run)
    if not targets:
        return result
    async with pool.acquire() as conn:
        anchors, result.refused = await _anchors(conn, targets, unknown_is_bad_input)
        runnable = {a.portfolio_id: a for a in anchors}
        try:
            async with conn.transaction():
                if dry_run and runnable:  # the same statements, on temporary copies: needs no write privilege
                    earliest = min(a.anchor_date for a in runnable.values())
                    await use_dry_run_copies(conn, "dryrun/copy_portfolios", sorted(runnable),
                                             also=(("dryrun/copy_marks", (earliest,)),))
                while runnable:
                    try:
                        async with conn.transaction():          # a savepoint per attempt
                            await _replay(conn, runnable, result, on_progress, marks)
                        break
                    except _ReplayRefused as exc:
                        result.changes, result.equity = [], {}
                        result.refused += [Refusal(p, why) for p, why in sorted(exc.refused.items())]
                        for pid in exc.refused:
                            runnable.pop(pid)
                result.anchors = [runnable[p] for p in sorted(runnable)]
                if expect is not None and result.changes != expect:
                    raise PnlError("the data changed since the repair was previewed, so it would now write other "
                                   "NAVs than the ones shown; nothing was changed: run the repair again")
                if dry_run:
                    raise _DryRunDone
        except _DryRunDone:
            result.rescue_run_id = None
    result.refused.sort(key=lambda r: r.portfolio_id)
    return result


async def _replay(conn: asyncpg.Connection, anchors: dict[int, Anchor], result: RepairResult,
                  on_progress: Callable[[int, int], None] | None, marks: Sequence[MarkDiff] = ()) -> None:
    host, pid = socket.gethostname(), os.getpid()
    pids = sorted(anchors)
    rescue_id = await conn.fetchval(sql("rescue/start_rescue_run"), "repair", host, pid)
    token = (await conn.fetchrow(sql("runs/start_run"), min(a.from_date for a in anchors.values()), host, pid,
                                 None, None))["id"]
    equity_before = {r["id"]: r["equity_balance"] for r in await conn.fetch(sql("repair/get_equity"), pids)}
    opening = [a for a in anchors.values() if a.kind != "snapshot"]
    if opening:
        # No snapshot before the range: the chain opens with the first snapshot's opening equity.
        await conn.fetch(sql("repair/set_equity"), [a.portfolio_id for a in opening], [a.equity for a in opening])
    if marks:
        result.marks = [MarkFix(r["mark_date"], r["symbol"], r["old_close"], r["new_close"], r["new_price_date"])
                        for r in await conn.fetch(sql("repair/refix_marks"), rescue_id,
                                                  [m.mark_date for m in marks], [m.symbol for m in marks], token)]
    reopened = await conn.fetch(sql("repair/archive_and_reopen_snapshots"), rescue_id, token, pids,
                                [anchors[p].from_date for p in pids])
    old = {(r["portfolio_id"], r["snapshot_date"]): r["old_nav"] for r in reopened}
    by_date: dict[date, list[int]] = {}
    for (p, d) in old:
        by_date.setdefault(d, []).append(p)
    for n, day in enumerate(sorted(by_date), 1):
        await fix_marks(conn, day, token)          # a date without (some) marks gets them, as in the batch
        fin = await finalize_chunk(conn, token, day, sorted(by_date[day]), gap_free=False)
        if on_progress:
            on_progress(n, len(by_date))
        refused = {f.portfolio_id: f"replay stopped at {day}: {reason(f, day)}" for f in fin.refused}
        refused.update({p: f"replay stopped at {day}: its claim was taken by another run" for p in fin.lost})
        if refused:
            raise _ReplayRefused(refused)
    new = {(r["portfolio_id"], r["snapshot_date"]): r["net_asset_value"]
           for r in await conn.fetch(sql("repair/list_repaired_snapshots"), token)}
    result.changes = [Change(p, d, old[(p, d)], new.get((p, d))) for (p, d) in sorted(old)]
    equity_after = {r["id"]: r["equity_balance"] for r in await conn.fetch(sql("repair/get_equity"), pids)}
    result.equity = {p: (equity_before[p], equity_after[p]) for p in pids}
    await conn.execute(sql("runs/finish_run"), token, "succeeded", len(old), 0, 0, 0, 0, "[]", 0, 0)
    summary = {"portfolios": len(pids), "snapshots": len(old), "changed": result.changed, "batch_run_id": token,
               "marks_refixed": len(result.marks),
               "equity_before": {str(p): str(v) for p, v in equity_before.items()}}
    await conn.execute(sql("rescue/finish_rescue_run"), rescue_id, "done", json.dumps(summary))
    result.rescue_run_id = rescue_id


@dataclass(frozen=True)
class RepairPlan:
    """What a repair will do: which portfolios from which date, which marks it
    re-fixes, and the NAVs it will write (a dry run). apply_repair writes
    exactly these or nothing."""

    targets: dict[int, date]
    preview: RepairResult
    strict: bool = True        # an unknown portfolio is bad input (not with all_broken: listed instead)
    marks: tuple[MarkDiff, ...] = ()


async def plan_repair(pool: asyncpg.Pool, portfolios: Sequence[int] = (), from_date: DayRequest | None = None,
                      all_broken: bool = False) -> RepairPlan:
    """Pick the targets and preview:
    * portfolios + from_date: replay those portfolios from that date (with the marks as they are);
    * from_date alone: re-fix every valuation mark on or after it that differs from market_prices,
      and replay the portfolios they affect;
    * all_broken: every portfolio the chain and equity checks flag, from its first broken date,
      and every differing mark, with the portfolios it affects."""
    if (all_broken and (portfolios or from_date is not None)) or (not all_broken and from_date is None):
        raise BadInput("repair needs a from date (with or without portfolios), or all_broken alone")
    async with pool.acquire() as conn:
        targets: dict[int, date] = {}
        marks: list[MarkDiff] = []
        if all_broken:
            targets = {p: d for p, (d, _) in (await flagged_chain_portfolios(conn)).items()}
            marks = await differing_marks(conn)
        else:
            day = await resolve_day(conn, from_date)  # type: ignore[arg-type]
            if portfolios:
                targets = {p: day for p in portfolios}
            else:
                marks = await differing_marks(conn, since=day)
        marks = [m for m in marks if m.current_close is not None and m.current_close > 0]
        if marks:
            rows = await conn.fetch(sql("repair/find_mark_portfolios"), [m.mark_date for m in marks],
                                    [m.symbol for m in marks])
            for r in rows:
                pid, since = r["portfolio_id"], r["from_date"]
                targets[pid] = min(targets.get(pid, since), since)
    preview = (await repair(pool, targets, dry_run=True, unknown_is_bad_input=bool(portfolios), marks=marks)
               if targets else RepairResult(dry_run=True))
    return RepairPlan(targets, preview, strict=bool(portfolios), marks=tuple(marks))


async def apply_repair(pool: asyncpg.Pool, plan: RepairPlan,
                       on_progress: Callable[[int, int], None] | None = None) -> RepairResult:
    """Apply a plan: the same targets and marks, committed only if the NAVs are the previewed ones."""
    if not plan.targets:
        return RepairResult(dry_run=False)
    return await repair(pool, plan.targets, dry_run=False, on_progress=on_progress,
                        unknown_is_bad_input=plan.strict, expect=plan.preview.changes, marks=plan.marks)
