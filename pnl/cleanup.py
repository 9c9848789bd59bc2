"""Unfinished claims left behind by runs that died: list them, or delete them."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg

from pnl.queries import sql


async def stale_claims(pool: asyncpg.Pool, older_than: timedelta, day: date | None) -> list[dict]:
    async with pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql("cleanup/list_stale_claims"), older_than, day)]


async def delete_stale_claims(pool: asyncpg.Pool, older_than: timedelta, day: date | None) -> list[dict]:
    async with pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql("cleanup/delete_stale_claims"), older_than, day)]
