"""Synthetic, realistic, deterministic sample data, loaded with COPY.

Long and short stock positions, option positions (multiplier 100), positions
opened and closed inside the window, capital flows in and out, and prices on
weekdays only. The same arguments and --seed give the same rows.

The model, so the numbers are believable (NAVs stay positive, a day's return
is a few percent at most):
- prices: a daily random walk with drift 0.03%; volatility 1.5% a day for
  stocks, 4% for options (priced 0.50 to 20.00, multiplier 100);
- a portfolio starts with 100,000 to 10,000,000 (log-uniform) and holds its
  positions at a gross leverage of 0.8x to 1.6x its equity, split over its
  positions with random weights (an option's notional a quarter of a stock's),
  about 30% of them short;
- a position held since before the window was bought within a day's move of
  the first day's close; one opened inside the window at that day's close;
  one closed inside the window within 1% of that day's close;
- capital flows: up to two, from a 5% withdrawal to an 8% contribution.
Measured (200 portfolios x 8 positions, 86 days, seeds 1-3): daily returns with a
standard deviation of 0.55%, the largest 3.4%; every NAV positive.
"""

from __future__ import annotations

import math
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


STOCK_VOL = 0.015       # daily volatility of a stock's close
OPTION_VOL = 0.04       # of an option's
DRIFT = 0.0003          # daily drift of every close
LEVERAGE = (0.8, 1.6)   # gross exposure / equity, per portfolio
OPTION_WEIGHT = 0.25    # an option's notional relative to a stock position's
SHORT_SHARE = 0.3


def _walk(rng: random.Random, start: float, days: list[date], vol: float) -> dict[date, Decimal]:
    out, px = {}, start
    for d in days:
        px = max(0.05, px * (1 + rng.gauss(DRIFT, vol)))
        out[d] = Decimal(px).quantize(CENT)
    return out


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


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
    vols: dict[str, float] = {}
    for s in stocks:
        closes[s], vols[s] = _walk(rng, _log_uniform(rng, 5, 500), trading, STOCK_VOL), STOCK_VOL
    for s in options:
        closes[s], vols[s] = _walk(rng, rng.uniform(0.5, 20), trading, OPTION_VOL), OPTION_VOL
    prices = [(s, d, px) for s, by_day in closes.items() for d, px in by_day.items()]

    portfolios, positions, flows = [], [], []
    for pid in range(1, spec.portfolios + 1):
        equity = Decimal(round(_log_uniform(rng, 100_000, 10_000_000)))
        portfolios.append((pid, f"Portfolio {pid:05d}", equity))
        gross = float(equity) * rng.uniform(*LEVERAGE)
        weights = [rng.uniform(0.5, 1.5) for _ in range(spec.positions)]
        for weight in weights:
            is_option = bool(options) and (not stocks or rng.random() < 0.1)
            symbol = rng.choice(options if is_option else stocks)
            multiplier = 100 if is_option else 1
            if rng.random() < 0.6:                                    # held since before the window
                entry = trading[0] - timedelta(days=rng.randint(1, 120))
                entry_price = (closes[symbol][trading[0]]
                               * Decimal(math.exp(rng.gauss(0, vols[symbol])))).quantize(CENT)
            else:                                                     # opened inside the window
                entry = rng.choice(trading)
                entry_price = closes[symbol][entry]
            notional = gross * weight / sum(weights) * (OPTION_WEIGHT if is_option else 1)
            quantity = Decimal(max(1, round(notional / (float(entry_price) * multiplier))))
            if rng.random() < SHORT_SHARE:
                quantity = -quantity
            exit_date = exit_price = None
            later = [d for d in trading if d > entry]
            if later and rng.random() < 0.25:                         # closed inside the window
                exit_date = rng.choice(later)
                exit_price = (closes[symbol][exit_date] * Decimal(rng.uniform(0.99, 1.01))).quantize(CENT)
            positions.append((pid, symbol, quantity, Decimal(multiplier), entry, entry_price, exit_date, exit_price))
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
            amount = (equity * Decimal(rng.uniform(-0.05, 0.08))).quantize(CENT)
            flows.append((pid, rng.choice(calendar), amount))
    return portfolios, prices, positions, flows, trading


async def seed(pool: asyncpg.Pool, spec: SeedSpec, on_step: Callable[[str], None] | None = None) -> SeedResult:
    portfolios, prices, positions, flows, trading = generate(spec)
    result = SeedResult(len(portfolios), len(positions), len(prices), len(flows), trading)
    async with pool.acquire() as conn:
        if await conn.fetchval(sql("seed/portfolios_exist")):
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
            await conn.fetchval(sql("seed/reset_portfolio_id_sequence"), max(len(portfolios), 1))
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
