"""The price calendar: which dates the batch may run, on the database's clock.

A price date is a date with at least one close in market_prices. `batch run`
accepts only a price date that is not after today, where "today" is the
DATABASE's current_date (never the client machine's: a cron host in another
time zone must not run tomorrow). Anything else is refused with BadInput
before a single row is written, naming the nearest price dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from pnl.errors import BadInput
from pnl.queries import sql

KEYWORDS = ("today", "yesterday", "latest")


@dataclass(frozen=True)
class DayRequest:
    """A date as the user gave it: a literal date, or a keyword resolved later,
    in the database (`today`, `yesterday`, `latest`)."""

    keyword: str | None = None
    day: date | None = None

    def __post_init__(self) -> None:
        if (self.keyword is None) == (self.day is None) or (self.keyword and self.keyword not in KEYWORDS):
            raise ValueError(f"DayRequest needs a date or one of {KEYWORDS}")

    @classmethod
    def of(cls, value: date | str | DayRequest) -> DayRequest:
        if isinstance(value, DayRequest):
            return value
        if isinstance(value, date):
            return cls(day=value)
        return cls(keyword=value)

    def __str__(self) -> str:
        return self.keyword or self.day.isoformat()  # type: ignore[union-attr]


@dataclass(frozen=True)
class Resolved:
    """Where a requested date sits in the calendar."""

    asked: DayRequest
    day: date | None
    today: date
    is_price_date: bool
    previous: date | None
    next: date | None
    latest: date | None


async def locate(conn: asyncpg.Connection, request: DayRequest | date) -> Resolved:
    request = DayRequest.of(request)
    kind = request.keyword or "date"
    row = await conn.fetchrow(sql("calendar/resolve_date"), kind, request.day)
    return Resolved(request, row["day"], row["today"], row["is_price_date"], row["previous_price_date"],
                    row["next_price_date"], row["latest_price_date"])


def _named(r: Resolved) -> str:
    return str(r.asked) if r.asked.day else f"{r.asked} ({r.day})"


def _nearest(r: Resolved) -> str:
    before = f"{r.previous} (before)" if r.previous else "none before"
    after = f"{r.next} (after)" if r.next else "none after it up to today"
    return f"the nearest price dates are {before} and {after}"


async def resolve_run_date(conn: asyncpg.Connection, request: DayRequest) -> date:
    """The price date a `batch run` computes up to; BadInput for anything else."""
    r = await locate(conn, request)
    if r.day is None:     # 'latest' with no price at all
        raise BadInput(f"no price dates on or before today ({r.today}, the database's clock): "
                       "load market_prices first; nothing was run")
    if r.day > r.today:
        latest = f"the latest price date is {r.latest} (--date latest)" if r.latest else "there are no price dates yet"
        raise BadInput(f"{_named(r)} is after today ({r.today}, the database's clock): {latest}; nothing was run")
    if not r.is_price_date:
        raise BadInput(f"{_named(r)} is not a price date (no close in market_prices): {_nearest(r)}; "
                       "nothing was run")
    return r.day


async def resolve_day(conn: asyncpg.Connection, request: DayRequest | date) -> date:
    """A plain date on the database's clock (today/yesterday/latest resolved),
    without the price-date check: for --from of undo and repair."""
    r = await locate(conn, request)
    if r.day is None:
        raise BadInput(f"no price dates on or before today ({r.today}, the database's clock)")
    return r.day


@dataclass(frozen=True)
class Range:
    first: date
    last: date
    dates: list[date]      # the price dates in [first, last]


async def resolve_range(conn: asyncpg.Connection, first: DayRequest, last: DayRequest) -> Range:
    """A backfill's range: --to must not be after today; the price dates in it."""
    f = await resolve_day(conn, first)
    t = await locate(conn, last)
    if t.day is None:
        raise BadInput(f"no price dates on or before today ({t.today}, the database's clock)")
    if t.day > t.today:
        raise BadInput(f"--to {_named(t)} is after today ({t.today}, the database's clock): "
                       f"use --to latest (the latest price date is {t.latest}); nothing was run")
    if t.day < f:
        raise BadInput(f"--to {t.day} is before --from {f}")
    return Range(f, t.day, await price_dates(conn, f, t.day))


async def price_dates(conn: asyncpg.Connection, first: date, last: date) -> list[date]:
    return [r["price_date"] for r in await conn.fetch(sql("batch/list_price_dates"), first, last)]
