"""Unfinished claims left behind by runs that died: plan (list), then delete
exactly the listed ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import asyncpg

from pnl.queries import sql


@dataclass(frozen=True)
class StaleClaim:
    snapshot_id: int
    portfolio_id: int
    snapshot_date: date
    batch_run_id: int | None
    claimed_at: datetime
    lease_expires_at: datetime | None
    lease_expired: bool

    def to_json(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class CleanupPlan:
    """The claims older than `older_than` (for `day`, or every date) at planning time."""

    older_than: timedelta
    day: date | None
    claims: tuple[StaleClaim, ...] = ()


@dataclass(frozen=True)
class CleanupResult:
    plan: CleanupPlan
    deleted: tuple[StaleClaim, ...] = field(default_factory=tuple)

    @property
    def left_alone(self) -> int:
        """Listed, but finished or taken over by another run since: not deleted."""
        return len(self.plan.claims) - len(self.deleted)

    def to_json(self, dry_run: bool = False) -> dict:
        return {"dry_run": dry_run, "claims": [c.to_json() for c in self.plan.claims],
                "deleted": len(self.deleted), "left_alone": 0 if dry_run else self.left_alone}


async def plan_cleanup(pool: asyncpg.Pool, older_than: timedelta, day: date | None) -> CleanupPlan:
    """List the unfinished claims older than `older_than` (optionally for one date)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql("cleanup/list_stale_claims"), older_than, day)
    return CleanupPlan(older_than, day, tuple(StaleClaim(**dict(r)) for r in rows))


async def apply_cleanup(pool: asyncpg.Pool, plan: CleanupPlan) -> CleanupResult:
    """Delete exactly the plan's claims, each only while it is still the same
    unfinished claim of the same run (one statement)."""
    if not plan.claims:
        return CleanupResult(plan)
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql("cleanup/delete_listed_claims"), [c.snapshot_id for c in plan.claims],
                                [c.batch_run_id for c in plan.claims])
    gone = {r["snapshot_id"] for r in rows}
    return CleanupResult(plan, tuple(c for c in plan.claims if c.snapshot_id in gone))
