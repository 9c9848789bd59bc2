"""Synthetic, realistic, deterministic sample data, loaded with COPY.

Long and short stock positions, option positions (multiplier 100), positions
opened and closed inside the window, capital flows in and out, and prices on
weekdays only. The same arguments and --seed give the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import asyncpg

from pnl.errors import BadInput
from pnl.queries import sql

CENT = Decimal("0.01")


@dataclass(frozen=True)
class SeedSpec:
    portfolios: int
    positions: int
    days: int
    symbols: int
    end: date
    seed: int = 1
    legacy_duplicates: bool = False


@dataclass
class SeedResult:
    portfolios: int = 0
    positions: int = 0
    prices: int = 0
    flows: int = 0
    trading_days: list[date] | None = None
    duplicate_snapshots: int = 0

    def to_json(self) -> dict:
        days = self.trading_days or []
        return {"portfolios": self.portfolios, "positions": self.positions, "prices": self.prices,
                "capital_flows": self.flows, "duplicate_snapshots": self.duplicate_snapshots,
                "first_trading_day": days[0].isoformat() if days else None,
                "last_trading_day": days[-1].isoformat() if days else None, "trading_days": len(days)}


def _walk(rng: random.Random, start: Decimal, days: list[date], vol: float) -> dict[date, Decimal]:
    out, px = {}, float(start)
    for d in days:
        px = max(0.05, px * (1 + rng.gauss(0.0003, vol)))
        out[d] = Decimal(px).quantize(CENT)
    return out


def generate(spec: SeedSpec) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple], list[date]]:
    """(portfolios, prices, positions, flows) as COPY records, and the trading days."""
    rng = random.Random(spec.seed)
    calendar = [spec.end - timedelta(days=i) for i in range(spec.days - 1, -1, -1)]
    trading = [d for d in calendar if d.weekday() < 5]
    if not trading:
        raise BadInput(f"--days {spec.days} ending {spec.end} holds no weekday: nothing to price")
    n_options = max(1, spec.symbols // 10) if spec.symbols > 1 else 0
    stocks = [f"STK{i:04d}" for i in range(spec.symbols - n_options)]
    options = [f"OPT{i:04d}" for i in range(n_options)]
    closes: dict[str, dict[date, Decimal]] = {}
    for s in stocks:
        closes[s] = _walk(rng, Decimal(rng.uniform(5, 500)).quantize(CENT), trading, 0.02)
    for s in options:
        closes[s] = _walk(rng, Decimal(rng.uniform(0.5, 20)).quantize(CENT), trading, 0.06)
    prices = [(s, d, px) for s, by_day in closes.items() for d, px in by_day.items()]

    portfolios, positions, flows = [], [], []
    for pid in range(1, spec.portfolios + 1):
        equity = Decimal(rng.randint(10_000, 10_000_000))
        portfolios.append((pid, f"Portfolio {pid:05d}", equity))
        for _ in range(spec.positions):
            is_option = bool(options) and (not stocks or rng.random() < 0.1)
            symbol = rng.choice(options if is_option else stocks)
            quantity = Decimal(rng.randint(1, 50) if is_option else rng.randint(1, 2000))
            if rng.random() < 0.3:
                quantity = -quantity                                  # short
            if rng.random() < 0.6:                                    # held since before the window
                entry = trading[0] - timedelta(days=rng.randint(1, 120))
                entry_price = (closes[symbol][trading[0]] * Decimal(rng.uniform(0.7, 1.3))).quantize(CENT)
            else:                                                     # opened inside the window
                entry = rng.choice(trading)
                entry_price = closes[symbol][entry]
            exit_date = exit_price = None
            later = [d for d in trading if d > entry]
            if later and rng.random() < 0.25:                         # closed inside the window
                exit_date = rng.choice(later)
                exit_price = (closes[symbol][exit_date] * Decimal(rng.uniform(0.98, 1.02))).quantize(CENT)
            positions.append((pid, symbol, quantity, Decimal(100 if is_option else 1), entry, entry_price,
                              exit_date, exit_price))
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
            amount = (equity * Decimal(rng.uniform(-0.05, 0.08))).quantize(CENT)
            flows.append((pid, rng.choice(calendar), amount))
    return portfolios, prices, positions, flows, trading


async def seed(pool: asyncpg.Pool, spec: SeedSpec, on_step: Callable[[str], None] | None = None) -> SeedResult:
    portfolios, prices, positions, flows, trading = generate(spec)
    result = SeedResult(len(portfolios), len(positions), len(prices), len(flows), trading)
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM portfolios)"):
            raise BadInput("seed fills an empty database, and this one already has portfolios "
                           "(use a fresh database, or `pnl rollback --all --yes` then `pnl migrate`)")
        async with conn.transaction():
            steps = [("portfolios", ["id", "name", "equity_balance"], portfolios),
                     ("market_prices", ["symbol", "price_date", "close_price"], prices),
                     ("positions", ["portfolio_id", "symbol", "quantity", "multiplier", "entry_date",
                                    "entry_price", "exit_date", "exit_price"], positions),
                     ("capital_flows", ["portfolio_id", "flow_date", "amount"], flows)]
            for table, columns, records in steps:
                await conn.copy_records_to_table(table, records=records, columns=columns)
                if on_step:
                    on_step(table)
            await conn.execute("SELECT setval(pg_get_serial_sequence('portfolios', 'id'), $1)",
                               max(len(portfolios), 1))
            if spec.legacy_duplicates:
                result.duplicate_snapshots = await _legacy_duplicates(conn, spec, trading[-1])
    return result


async def _legacy_duplicates(conn: asyncpg.Connection, spec: SeedSpec, day: date) -> int:
    """What the old batch left behind: for about one portfolio in ten, 2 to 4
    snapshots of the last day, each with the P&L applied once more, and equity
    inflated to match. Only possible before the unique constraint exists."""
    if await conn.fetchval(sql("seed/unique_constraint_exists")):
        raise BadInput("--legacy-duplicates needs a database without uq_portfolio_snapshot_date "
                       "(a legacy one: `pnl migrate --to 0002b`), because the constraint forbids duplicates")
    rng = random.Random(spec.seed + 1)
    rows = []
    for pid in range(1, spec.portfolios + 1):
        if rng.random() >= 0.1:
            continue
        pnl = Decimal(rng.uniform(-5000, 5000)).quantize(CENT)
        for k in range(1, rng.randint(2, 4) + 1):
            rows.append((pid, day, pnl, k))
    if rows:
        await conn.execute(sql("seed/insert_legacy_duplicates"), [r[0] for r in rows], [r[1] for r in rows],
                           [r[2] for r in rows], [r[3] for r in rows])
    return len(rows)
