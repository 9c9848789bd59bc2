"""What `pnl status` reports: migrations, recent runs, unfinished claims."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg

from pnl.db import planned_transaction
from pnl.migrate import MigrationState, states
from pnl.queries import sql
from pnl.verify import CheckResult, run_checks

STALE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class ChainLag:
    """How far behind the latest price date (not after today) the chains are."""

    latest_price_date: date | None
    portfolios: int
    up_to_date: int
    never_run: int
    behind: int
    lag: dict[int, int]          # N price dates behind -> portfolios

    def to_json(self) -> dict:
        return {"latest_price_date": self.latest_price_date.isoformat() if self.latest_price_date else None,
                "portfolios": self.portfolios, "up_to_date": self.up_to_date, "never_run": self.never_run,
                "behind": self.behind,
                "lag": [{"dates_behind": n, "portfolios": c} for n, c in sorted(self.lag.items())]}


@dataclass(frozen=True)
class Status:
    migrations: list[MigrationState]
    runs: list[dict]
    claims: list[dict]
    checks: list[CheckResult] | None = None
    chain: ChainLag | None = None
    rescue: list[dict] | None = None      # dedupe/repair/undo runs not done or restored

    @property
    def current(self) -> bool:
        return all(m.applied for m in self.migrations)

    def to_json(self) -> dict:
        return {
            "schema_current": self.current,
            "migrations": [
                {"id": m.id, "applied": m.applied,
                 "applied_at": m.applied_at.isoformat() if m.applied_at else None}
                for m in self.migrations
            ],
            "recent_runs": self.runs,
            "unfinished_claims": self.claims,
            "unfinished_rescue_runs": self.rescue or [],
            "chain": self.chain.to_json() if self.chain else None,
            "verify": None if self.checks is None else [c.to_json() for c in self.checks],
        }


def _plain(record: asyncpg.Record) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items()}


def _run(record: asyncpg.Record) -> dict:
    """A recent run; its jsonb columns (stale_symbols from 0008 on, a rescue run's summary) decoded."""
    run = _plain(record)
    for key in ("stale_symbols", "summary"):
        if isinstance(run.get(key), str):
            run[key] = json.loads(run[key])
    return run


async def collect(pool: asyncpg.Pool, runs: int = 10, with_checks: bool = True) -> Status:
    async with pool.acquire() as conn:
        migrations = await states(conn)
        applied = {m.id for m in migrations if m.applied}
        recent: list[dict] = []
        claims: list[dict] = []
        # Each part needs the migration that created its columns.
        if "0002_operations" in applied:
            recent = [_run(r) for r in await conn.fetch(sql("status/recent_runs"), runs, STALE_AFTER)]
        chain = None
        rescue: list[dict] = []
        if "0002b_rescue_audit" in applied:
            rescue = [_run(r) for r in await conn.fetch(sql("status/unfinished_rescue_runs"))]
        if "0003_idempotency_precheck" in applied:
            claims = [_plain(r) for r in await conn.fetch(sql("status/unfinished_claims"))]
            # before 0012 there is no equity_as_of to read chain ends from: probe them all
            lag_sql = "status/chain_lag" if "0012_equity_as_of" in applied else "status/chain_lag_probe"
            async with planned_transaction(conn):   # its chain-end probes are index probes, however
                r = await conn.fetchrow(sql(lag_sql))  # empty the table was when planned
            chain = ChainLag(r["latest_price_date"], r["portfolios"], r["up_to_date"], r["never_run"], r["behind"],
                             dict(zip(r["lag_dates"], r["lag_counts"], strict=True)))
    checks = await run_checks(pool) if with_checks else None
    return Status(migrations, recent, claims, checks, chain, rescue)
