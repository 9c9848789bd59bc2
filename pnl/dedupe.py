"""Dedupe legacy duplicate snapshots: plan -> archive+delete -> check.

Works on a legacy database whose idempotency migration is not applied yet (the
SQL reads is_complete through to_jsonb, so a missing column is fine). Every
deleted row is archived whole in snapshot_dedupe_audit in the same statement,
and `restore` puts a run's rows back.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from pnl.db import use_dry_run_copies
from pnl.errors import BadInput, PnlError, SchemaNotReady
from pnl.migrate import states
from pnl.queries import sql

AUDIT_MIGRATION = "0002b_rescue_audit"


@dataclass(frozen=True)
class DeletedRow:
    portfolio_id: int
    snapshot_date: date
    kept_snapshot_id: int
    kept_nav: Decimal | None
    kept_created_at: datetime
    deleted_snapshot_id: int
    deleted_nav: Decimal | None
    deleted_created_at: datetime


@dataclass
class DedupeResult:
    run_id: int | None
    dry_run: bool
    groups: int = 0
    deleted: int = 0
    rows: list[DeletedRow] = field(default_factory=list)
    portfolios: set[int] = field(default_factory=set)
    remaining_groups: int = 0

    def to_json(self, max_rows: int = 1000) -> dict:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "groups": self.groups,
            "deleted": self.deleted,
            "remaining_duplicate_groups": self.remaining_groups,
            "affected_portfolios": sorted(self.portfolios),
            "rows": [
                {k: (v.isoformat() if isinstance(v, date | datetime) else str(v) if isinstance(v, Decimal) else v)
                 for k, v in r.__dict__.items()}
                for r in self.rows[:max_rows]
            ],
        }


async def require_audit_table(conn: asyncpg.Connection) -> None:
    applied = {s.id for s in await states(conn) if s.applied}
    if AUDIT_MIGRATION not in applied:
        raise SchemaNotReady(
            f"dedupe archives what it deletes in tables created by migration {AUDIT_MIGRATION}: run `pnl migrate` "
            "first (on a database with duplicates it applies what it can and stops before the unique constraint)"
        )


async def summarize(conn: asyncpg.Connection) -> tuple[int, int, int]:
    row = await conn.fetchrow(sql("dedupe/summarize_duplicates"))
    return row["groups"], row["extra_rows"], row["portfolios"]


def _absorb(result: DedupeResult, records: list[asyncpg.Record]) -> None:
    rows = [DeletedRow(**dict(r)) for r in records]
    result.rows.extend(rows)
    result.deleted += len(rows)
    result.groups += len({(r.portfolio_id, r.snapshot_date) for r in rows})
    result.portfolios.update(r.portfolio_id for r in rows)


async def plan_dedupe(pool: asyncpg.Pool) -> DedupeResult:
    """The dry run: exactly what a dedupe would archive and delete now.

    The very statements of a real run execute in one transaction that is then
    rolled back, on temporary copies of the tables (pnl.db.use_dry_run_copies):
    the plan shown is exactly what a real run would do, nothing remains, and
    the read-only role can run it.
    """
    async with pool.acquire() as conn:
        await require_audit_table(conn)
        total_groups, _, _ = await summarize(conn)
        tx = conn.transaction()
        await tx.start()
        try:
            await use_dry_run_copies(conn, "dryrun/copy_duplicate_snapshots")
            run_id = await conn.fetchval(sql("rescue/start_rescue_run"), "dedupe", socket.gethostname(), os.getpid())
            result = DedupeResult(run_id=None, dry_run=True)
            _absorb(result, await conn.fetch(sql("dedupe/delete_duplicate_snapshots"), run_id, 2**31 - 1, None))
            result.remaining_groups = total_groups
        finally:
            await tx.rollback()
        return result


async def apply_dedupe(
    pool: asyncpg.Pool,
    plan: DedupeResult,
    batch_size: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> DedupeResult:
    """Archive and delete exactly the rows `plan` (plan_dedupe) listed,
    `batch_size` groups per transaction. A row the rule would now keep, or that
    arrived since the plan, is not deleted; duplicates left over are counted in
    remaining_groups (run dedupe again to see and confirm them)."""
    groups: dict[tuple[int, date], list[int]] = {}
    for r in plan.rows:
        groups.setdefault((r.portfolio_id, r.snapshot_date), []).append(r.deleted_snapshot_id)
    keys = sorted(groups)
    async with pool.acquire() as conn:
        await require_audit_table(conn)
        run_id = await conn.fetchval(sql("rescue/start_rescue_run"), "dedupe", socket.gethostname(), os.getpid())
        result = DedupeResult(run_id=run_id, dry_run=False)
        try:
            for start in range(0, len(keys), batch_size):
                ids = [i for key in keys[start:start + batch_size] for i in groups[key]]
                async with conn.transaction():
                    records = await conn.fetch(sql("dedupe/delete_duplicate_snapshots"), run_id, batch_size, ids)
                _absorb(result, records)
                if on_batch:
                    on_batch(min(start + batch_size, len(keys)), len(keys))
            result.remaining_groups, _, _ = await summarize(conn)
        except BaseException:
            await conn.execute(sql("rescue/finish_rescue_run"), run_id, "failed",
                               json.dumps({"groups": result.groups, "deleted": result.deleted}))
            raise
        await conn.execute(sql("rescue/finish_rescue_run"), run_id, "done",
                           json.dumps({"groups": result.groups, "deleted": result.deleted,
                                       "portfolios": len(result.portfolios)}))
        return result


async def restore(pool: asyncpg.Pool, run_id: int) -> int:
    """Put back every row dedupe run `run_id` deleted; returns how many."""
    async with pool.acquire() as conn:
        await require_audit_table(conn)
        run = await conn.fetchrow(sql("rescue/get_rescue_run"), run_id)
        if run is None or run["kind"] != "dedupe":
            raise BadInput(f"no dedupe run #{run_id} (see rescue_runs)")
        try:
            async with conn.transaction():
                restored = await conn.fetchval(sql("dedupe/restore_dedupe_run"), run_id)
                if restored:
                    await conn.execute(sql("rescue/finish_rescue_run"), run_id, "restored",
                                       json.dumps({"restored": restored}))
        except asyncpg.UniqueViolationError:
            raise PnlError(
                "cannot restore: the unique constraint uq_portfolio_snapshot_date forbids the duplicates this "
                "would put back (nothing was restored); restore is possible only before the idempotency "
                "migration, e.g. after `pnl rollback --to 0002b --yes`"
            ) from None
        return restored
