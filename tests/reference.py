"""An independent, plain-Python statement of the P&L rules, used only by the
tests to check what the SQL computed. It shares no code with pnl/ or sql/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

FOUR = Decimal("0.0001")
TEN = Decimal("0.0000000001")


@dataclass(frozen=True)
class Position:
    symbol: str
    quantity: Decimal
    entry_date: date
    entry_price: Decimal
    multiplier: Decimal = Decimal(1)
    exit_date: date | None = None
    exit_price: Decimal | None = None


@dataclass(frozen=True)
class Snap:
    day: date
    opening: Decimal
    pnl: Decimal
    flow: Decimal
    nav: Decimal
    daily_return: Decimal | None
    cumulative: Decimal
    long_value: Decimal
    short_value: Decimal
    num_positions: int


Prices = dict[str, dict[date, Decimal]]
Marks = dict[date, dict[str, Decimal]]      # the close each date was valued with, by symbol


def r4(x: Decimal) -> Decimal:
    return x.quantize(FOUR, rounding=ROUND_HALF_UP)


def latest_close(prices: Prices, symbol: str, on_or_before: date) -> Decimal | None:
    days = [d for d in prices.get(symbol, {}) if d <= on_or_before]
    return prices[symbol][max(days)] if days else None


def marks_as_of(prices: Prices, day: date, symbols: set[str] | None = None) -> dict[str, Decimal]:
    """The marks a run of `day` fixes when market_prices holds `prices`: each
    symbol's latest close <= day (carried forward when it has none on the day)."""
    out = {}
    for symbol in prices if symbols is None else symbols:
        close = latest_close(prices, symbol, day)
        if close is not None and close > 0:
            out[symbol] = close
    return out


def replay(balance: Decimal, positions: list[Position], prices: Prices,
           flows: list[tuple[date, Decimal]], days: list[date], marks: Marks | None = None) -> list[Snap]:
    """The chain of snapshots for `days` (ascending), from a starting balance.

    The marks rule: a date is valued with its mark (the close fixed when the
    date first ran), and the next date starts from it. `marks` gives the marks
    of the dates that have them (missing: the prices were on time, so a date's
    mark is its latest close <= it in `prices`); a start date B without a mark
    for the symbol (the first snapshot of a chain, legacy history) uses the
    latest close <= B in `prices`."""
    out: list[Snap] = []
    all_days = sorted({d for by_day in prices.values() for d in by_day})
    marks = marks or {}

    def mark(symbol: str, day: date) -> Decimal | None:
        if day in marks:
            return marks[day].get(symbol)
        return latest_close(prices, symbol, day)
    for day in days:
        prev = out[-1] if out else None
        if prev:
            b: date | None = prev.day
        else:
            before = [d for d in all_days if d < day]
            b = max(before) if before else None
        opening = prev.nav if prev else balance
        pnl = Decimal(0)
        long_v = short_v = Decimal(0)
        n_open = 0
        for p in positions:
            if p.entry_date > day or (p.exit_date is not None and b is not None and p.exit_date <= b):
                continue
            units = p.quantity * p.multiplier
            if b is None or p.entry_date > b:
                start = p.entry_price
            else:
                close_b = marks[b].get(p.symbol) if b in marks else None
                if close_b is None:
                    close_b = latest_close(prices, p.symbol, b)
                start = p.entry_price if close_b is None else close_b
            if p.exit_date is not None and p.exit_date <= day:
                end = p.exit_price
            else:
                end = mark(p.symbol, day)
                if end is None:
                    raise LookupError(p.symbol)
                n_open += 1 if p.quantity != 0 else 0
                value = units * end
                if units > 0:
                    long_v += value
                else:
                    short_v += value
            pnl += units * (end - start)
        pnl = r4(pnl)
        flow = r4(sum((a for d, a in flows if d <= day and (b is None or d > b)), Decimal(0)))
        nav = opening + pnl + flow
        ret = None if opening == 0 else (pnl / opening).quantize(TEN, rounding=ROUND_HALF_UP)
        cumulative = (prev.cumulative if prev else Decimal(0)) + pnl
        out.append(Snap(day, opening, pnl, flow, nav, ret, cumulative, r4(long_v), r4(short_v), n_open))
    return out
