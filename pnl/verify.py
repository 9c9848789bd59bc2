"""Run every sql/verify/*.sql check and report the offending rows.

The same files are plain `psql -f` files for a DBA: each returns the rows that
are wrong (zero rows = healthy), and its header says what a row means and what
to do. A check that cannot run on this schema yet (a column a pending
migration adds) is reported as not run, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from pnl.queries import names, sql

EXAMPLES = 3


@dataclass(frozen=True)
class CheckResult:
    name: str
    summary: str
    rows: int
    examples: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.error is None and self.rows == 0

    def to_json(self) -> dict:
        return {"check": self.name, "summary": self.summary, "rows": self.rows,
                "examples": self.examples, "error": self.error, "healthy": self.healthy}


def _summary(text: str) -> str:
    """The header's first line, after `-- name: `."""
    first = text.lstrip().splitlines()[0].lstrip("- ").strip()
    return first.split(":", 1)[1].strip() if ":" in first else first


def _plain(value: object) -> object:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# The checks `since` bounds (their headers say how); the others cost the same
# at any depth (one probe per portfolio, the claims' partial index, the catalog).
BOUNDED = ("broken_equity_chain", "chain_skips_price_date", "duplicate_snapshots", "marks_differ_from_prices")


async def run_checks(pool: asyncpg.Pool, since: date | None = None) -> list[CheckResult]:
    """Every check; with `since`, the date-bounded ones (BOUNDED) look only at
    snapshots and marks on or after it (sql/checks/set_verify_since.sql)."""
    results = []
    async with pool.acquire() as conn:
        for name in (n for n in names() if n.startswith("verify/")):
            text = sql(name)
            short = name.removeprefix("verify/")
            try:
                async with conn.transaction():
                    await conn.fetchval(sql("checks/set_verify_since"), since)
                    records = await conn.fetch(text)
            except (asyncpg.UndefinedColumnError, asyncpg.UndefinedTableError) as exc:
                results.append(CheckResult(short, _summary(text), 0,
                                           error=f"not run: {exc} (run `pnl migrate`)"))
                continue
            examples = [{k: _plain(v) for k, v in r.items()} for r in records[:EXAMPLES]]
            results.append(CheckResult(short, _summary(text), len(records), examples))
    return results


async def flagged_chain_portfolios(conn: asyncpg.Connection) -> dict[int, tuple[date, str]]:
    """Portfolios the chain and equity checks flag, with the date a repair
    should start from (the first broken snapshot, else the latest one)."""
    flagged: dict[int, tuple[date, str]] = {}
    for r in await conn.fetch(sql("verify/broken_equity_chain")):
        if r["portfolio_id"] not in flagged:
            flagged[r["portfolio_id"]] = (r["snapshot_date"], "broken equity chain")
    for r in await conn.fetch(sql("verify/equity_mismatch")):
        flagged.setdefault(r["portfolio_id"], (r["latest_snapshot_date"], "equity differs from latest NAV"))
    for r in await conn.fetch(sql("verify/equity_as_of_mismatch")):
        if r["latest_snapshot_date"] is None:
            continue            # equity_as_of set, no snapshot left: nothing to replay (see the check's header)
        flagged.setdefault(r["portfolio_id"],
                           (r["latest_snapshot_date"], "equity_as_of is not the latest snapshot's date"))
    return flagged


@dataclass(frozen=True)
class MarkDiff:
    """A valuation mark market_prices no longer agrees with (verify/marks_differ_from_prices)."""

    mark_date: date
    symbol: str
    mark: Decimal
    current_close: Decimal | None
    kind: str                   # corrected | arrived_late | deleted
    portfolios: int


async def differing_marks(conn: asyncpg.Connection, since: date | None = None) -> list[MarkDiff]:
    """The marks that differ from market_prices now, on or after `since` (all: None)."""
    return [MarkDiff(r["mark_date"], r["symbol"], r["mark"], r["current_close"], r["kind"], r["portfolios_affected"])
            for r in await conn.fetch(sql("verify/marks_differ_from_prices"))
            if since is None or r["mark_date"] >= since]
