"""Poison rows: a data error in one portfolio (numeric overflow, a check
violation, a division by zero) fails that portfolio, by name, with the
database's message; the rest of its chunk is processed; splitting the chunk is
set-based (halves, not a statement per row); fixing the row and running again
completes it exactly once."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

import pytest

from tests.conftest import Db
from tests.data import random_book
from tests.procs import finish, start_batch
from tests.test_crash_safety import assert_exactly_once, incomplete

DAY = date(2026, 6, 1)
DAYS = [date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3)]

# Counts finalize statements (the UPDATE that sets is_complete), failed ones
# included: a sequence is not rolled back with the statement's transaction.
COUNT_FINALIZE_SQL = """
CREATE SEQUENCE pnl_test_finalize_statements;
CREATE FUNCTION pnl_test_count_finalize() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('pnl_test_finalize_statements');
    RETURN NULL;
END $$;
CREATE TRIGGER pnl_test_count_finalize BEFORE UPDATE OF is_complete ON portfolio_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION pnl_test_count_finalize();
"""


def finalize_statements(db: Db) -> int:
    return db.scalar("SELECT last_value FROM pnl_test_finalize_statements")  # type: ignore[return-value]


def overflowing_position(db: Db, day: date, offset: int) -> tuple[int, int, Decimal]:
    """(position id, portfolio id, quantity) of a position open on `day` whose
    close that day is at least 1: at a quantity of 1e17 its value cannot fit
    numeric(20,4) (less than 10^16)."""
    return db.one("SELECT pos.id, pos.portfolio_id, pos.quantity FROM positions AS pos"
                  " JOIN market_prices AS mp ON mp.symbol = pos.symbol AND mp.price_date = %s"
                  " WHERE pos.exit_date IS NULL AND pos.entry_date <= %s AND mp.close_price >= 1"
                  " ORDER BY pos.portfolio_id, pos.id OFFSET %s LIMIT 1", day, day, offset)  # type: ignore[return-value]


@pytest.mark.parametrize("chunk_size", [None, 7], ids=["default-chunk", "chunk-7"])
def test_an_overflowing_quantity_fails_only_its_portfolio(db: Db, chunk_size: int | None) -> None:
    book = random_book(db.conn, 300, [DAY])
    pos_id, poison, quantity = overflowing_position(db, DAY, offset=120)
    db.execute("UPDATE positions SET quantity = 1e17 WHERE id = %s", pos_id)
    db.execute(COUNT_FINALIZE_SQL)
    args = ("--chunk-size", str(chunk_size)) if chunk_size else ()
    code, out, err = finish(start_batch(db.dsn, "--date", DAY.isoformat(), *args))
    assert code == 1, err
    assert "Traceback" not in err
    assert out is not None and (out["processed"], out["failed"], out["status"]) == (299, 1, "partial"), out
    assert out["error"] is None
    [failure] = out["failures"]
    assert failure["portfolio_id"] == poison and failure["date"] == DAY.isoformat()
    assert "numeric field overflow" in failure["reason"] and "22003" in failure["reason"], failure
    recorded = db.scalar("SELECT failures FROM batch_runs WHERE id = %s", out["run_id"])
    assert [f["portfolio_id"] for f in recorded] == [poison]                       # type: ignore[union-attr]
    assert incomplete(db) == 0                                   # the poison's claim was released
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s", poison) == 0
    # Set-based: the chunk holding the poison was split in halves down to it, never one statement per row.
    size = chunk_size or 300
    chunks = math.ceil(300 / size)
    assert finalize_statements(db) <= chunks + 2 * math.ceil(math.log2(size)), finalize_statements(db)
    # The text output names it too, on one line.
    assert f"portfolio {poison} on {DAY}: data error: numeric field overflow" in run_text(db, poison)

    db.execute("UPDATE positions SET quantity = %s WHERE id = %s", quantity, pos_id)   # the fix
    code, again, err = finish(start_batch(db.dsn, "--date", DAY.isoformat(), *args))
    assert code == 0, err
    assert again is not None and (again["processed"], again["already_done"]) == (1, 299)
    assert_exactly_once(db, book)


def run_text(db: Db, poison: int) -> str:
    """The text output's failure lines (stderr) for a run of the same date."""
    from tests.conftest import run_cli

    res = run_cli("batch", "run", "--date", DAY.isoformat(), "--portfolio", str(poison), dsn=db.dsn)
    assert res.code == 1 and "Traceback" not in res.err, res.err
    return res.err


# Data errors injected from the database side, for one portfolio, from the second date of a catch-up on.
CHECK_VIOLATION = ("ALTER TABLE portfolio_snapshots ADD CONSTRAINT pnl_test_poison"
                   " CHECK (portfolio_id <> {pid} OR snapshot_date < '{day}' OR NOT is_complete)")
DIVISION_BY_ZERO = """
CREATE FUNCTION pnl_test_divide() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 / (NEW.portfolio_id - {pid});
    RETURN NEW;
END $$;
CREATE TRIGGER pnl_test_poison BEFORE INSERT OR UPDATE ON portfolio_snapshots FOR EACH ROW
    WHEN (NEW.portfolio_id = {pid} AND NEW.is_complete AND NEW.snapshot_date >= '{day}')
    EXECUTE FUNCTION pnl_test_divide();
"""
CURE = {"check": "ALTER TABLE portfolio_snapshots DROP CONSTRAINT pnl_test_poison",
        "zero": "DROP TRIGGER pnl_test_poison ON portfolio_snapshots"}


@pytest.mark.parametrize(("kind", "poison_sql", "sqlstate", "message"), [
    ("check", CHECK_VIOLATION, "23514", 'violates check constraint "pnl_test_poison"'),
    ("zero", DIVISION_BY_ZERO, "22012", "division by zero"),
], ids=["check-violation", "division-by-zero"])
def test_a_catch_up_stops_a_poisoned_portfolio_at_its_date_and_goes_on_with_the_others(
        db: Db, kind: str, poison_sql: str, sqlstate: str, message: str) -> None:
    book = random_book(db.conn, 40, DAYS)
    code, out, err = finish(start_batch(db.dsn, "--date", DAYS[0].isoformat()))
    assert code == 0, err
    poison = sorted(book.balances)[17]
    db.execute(poison_sql.replace("{pid}", str(poison)).replace("{day}", DAYS[1].isoformat()))
    code, out, err = finish(start_batch(db.dsn, "--date", DAYS[2].isoformat(), "--chunk-size", "16"))
    assert code == 1, err
    assert "Traceback" not in err
    assert out is not None
    by_date = {d["date"]: (d["processed"], d["failed"]) for d in out["dates"]}
    # The poison fails on its first bad date, by name; its later date is not computed (released);
    # every other portfolio goes on through both dates.
    assert by_date == {DAYS[1].isoformat(): (39, 1), DAYS[2].isoformat(): (39, 1)}, out["dates"]
    [failure] = out["failures"]
    assert (failure["portfolio_id"], failure["date"]) == (poison, DAYS[1].isoformat())
    assert message in failure["reason"] and sqlstate in failure["reason"], failure
    assert incomplete(db) == 0
    assert db.all("SELECT snapshot_date FROM portfolio_snapshots WHERE portfolio_id = %s", poison) == [(DAYS[0],)]

    db.execute(CURE[kind])
    code, again, err = finish(start_batch(db.dsn, "--date", DAYS[2].isoformat()))
    assert code == 0, err
    assert again is not None and again["processed"] == 2
    assert_exactly_once(db, book, DAYS)
