"""Small helpers that put test data into a database with plain SQL."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import psycopg

from tests.reference import Position, Prices


def add_portfolio(conn: psycopg.Connection, name: str, balance: Decimal | int = 0) -> int:
    row = conn.execute(
        "INSERT INTO portfolios (name, equity_balance) VALUES (%s, %s) RETURNING id", (name, balance)
    ).fetchone()
    assert row is not None
    return row[0]


def add_positions(conn: psycopg.Connection, portfolio_id: int, positions: list[Position]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO positions (portfolio_id, symbol, quantity, multiplier, entry_date, entry_price,"
            " exit_date, exit_price) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(portfolio_id, p.symbol, p.quantity, p.multiplier, p.entry_date, p.entry_price,
              p.exit_date, p.exit_price) for p in positions],
        )


def add_prices(conn: psycopg.Connection, prices: Prices) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO market_prices (symbol, price_date, close_price) VALUES (%s, %s, %s)",
            [(s, d, px) for s, by_day in prices.items() for d, px in by_day.items()],
        )


def add_flow(conn: psycopg.Connection, portfolio_id: int, day: date, amount: Decimal | int) -> None:
    conn.execute("INSERT INTO capital_flows (portfolio_id, flow_date, amount) VALUES (%s, %s, %s)",
                 (portfolio_id, day, amount))


@dataclass
class Book:
    """A generated set of portfolios with everything needed to replay them."""

    prices: Prices = field(default_factory=dict)
    balances: dict[int, Decimal] = field(default_factory=dict)
    positions: dict[int, list[Position]] = field(default_factory=dict)
    flows: dict[int, list[tuple[date, Decimal]]] = field(default_factory=dict)


def random_book(conn: psycopg.Connection, n_portfolios: int, days: list[date], n_symbols: int = 40,
                seed: int = 7) -> Book:
    """Deterministic random portfolios: longs, shorts, options, trades opened and
    closed inside the window, and capital flows; prices for every day in `days`
    plus the day before the first."""
    rng = random.Random(seed)
    book = Book()
    price_days = [days[0] - timedelta(days=1), *days]
    for s in range(n_symbols):
        px = Decimal(rng.randint(500, 20000)) / 100
        book.prices[f"S{s:03d}"] = {}
        for d in price_days:
            px = max(Decimal("0.01"), px + Decimal(rng.randint(-300, 300)) / 100)
            book.prices[f"S{s:03d}"][d] = px
    add_prices(conn, book.prices)
    symbols = sorted(book.prices)
    for i in range(n_portfolios):
        balance = Decimal(rng.randint(0, 10_000_000)) / 100
        pid = add_portfolio(conn, f"rand-{i}", balance)
        positions = []
        for _ in range(rng.randint(0, 6)):
            entry = rng.choice([price_days[0] - timedelta(days=30), *days])
            exit_day = rng.choice([None, None, *[d for d in days if d >= entry]])
            positions.append(Position(
                symbol=rng.choice(symbols),
                quantity=Decimal(rng.randint(-500, 500) or 1),
                multiplier=Decimal(rng.choice([1, 1, 1, 100])),
                entry_date=entry,
                entry_price=Decimal(rng.randint(500, 20000)) / 100,
                exit_date=exit_day,
                exit_price=(Decimal(rng.randint(500, 20000)) / 100) if exit_day else None,
            ))
        add_positions(conn, pid, positions)
        flows = [(rng.choice(days), Decimal(rng.randint(-100_000, 100_000)) / 100)
                 for _ in range(rng.randint(0, 2))]
        for d, a in flows:
            add_flow(conn, pid, d, a)
        book.balances[pid], book.positions[pid], book.flows[pid] = balance, positions, flows
    return book
