"""pnl seed: realistic, deterministic, fast (COPY)."""

from __future__ import annotations

import json

from tests.conftest import Db, run_cli

ARGS = ("seed", "--portfolios", "40", "--positions", "12", "--days", "21", "--symbols", "30", "--end", "2026-11-27")


def dump(db: Db) -> tuple:
    return (db.all("SELECT id, name, equity_balance FROM portfolios ORDER BY id"),
            db.all("SELECT portfolio_id, symbol, quantity, multiplier, entry_date, entry_price, exit_date,"
                   " exit_price FROM positions ORDER BY id"),
            db.all("SELECT * FROM market_prices ORDER BY symbol, price_date"),
            db.all("SELECT portfolio_id, flow_date, amount FROM capital_flows ORDER BY id"))


def reset(db: Db) -> None:
    db.execute("TRUNCATE portfolios, positions, market_prices, capital_flows RESTART IDENTITY CASCADE")


def test_same_seed_same_data_other_seed_other_data(db: Db) -> None:
    res = run_cli(*ARGS, "--seed", "5", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    first = dump(db)
    reset(db)
    assert run_cli(*ARGS, "--seed", "5", dsn=db.dsn).code == 0
    assert dump(db) == first
    reset(db)
    assert run_cli(*ARGS, "--seed", "6", dsn=db.dsn).code == 0
    assert dump(db) != first


def test_the_data_is_realistic_and_the_batch_runs_on_it(db: Db) -> None:
    out = json.loads(run_cli(*ARGS, "--json", dsn=db.dsn).out)
    assert out["portfolios"] == 40 and out["positions"] == 480
    assert db.scalar("SELECT count(*) FROM market_prices WHERE extract(isodow FROM price_date) > 5") == 0
    assert db.scalar("SELECT count(*) FROM positions WHERE quantity < 0") > 0                 # shorts
    assert db.scalar("SELECT count(*) FROM positions WHERE multiplier = 100") > 0             # options
    assert db.scalar("SELECT count(*) FROM positions WHERE entry_date >= '2026-11-07'"
                     " AND exit_date <= '2026-11-27'") > 0                                     # in and out
    assert db.scalar("SELECT count(*) FROM capital_flows WHERE amount < 0") > 0                # withdrawals
    assert db.scalar("SELECT count(*) FROM capital_flows WHERE amount > 0") > 0                # contributions
    res = run_cli("batch", "backfill", "--from", out["first_trading_day"], "--to", out["last_trading_day"],
                  "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert run_cli("verify", dsn=db.dsn).code == 0
    # A second seed into a database that has data is refused, changing nothing.
    again = run_cli(*ARGS, dsn=db.dsn)
    assert again.code == 2 and "empty database" in again.err


def test_legacy_duplicates_reproduce_the_old_bug(empty_db: Db) -> None:
    assert run_cli("migrate", "--to", "0002b", dsn=empty_db.dsn).code == 0
    res = run_cli(*ARGS, "--legacy-duplicates", "--json", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["duplicate_snapshots"] > 0
    refused = run_cli("migrate", dsn=empty_db.dsn)
    assert refused.code == 1 and "duplicate snapshots" in refused.err
    assert run_cli("dedupe", "--yes", dsn=empty_db.dsn).code == 0
    assert run_cli("migrate", dsn=empty_db.dsn).code == 0


def test_seeded_books_are_believable(db: Db) -> None:
    """The model in pnl/seed.py: NAVs stay positive, a day's return is a few percent."""
    out = json.loads(run_cli("seed", "--portfolios", "60", "--positions", "8", "--days", "60", "--end", "2026-11-27",
                             "--seed", "3", "--json", dsn=db.dsn).out)
    res = run_cli("batch", "backfill", "--from", out["first_trading_day"], "--to", out["last_trading_day"],
                  dsn=db.dsn)
    assert res.code == 0, res.err
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE is_complete") == 60 * out["trading_days"]
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE net_asset_value <= 0") == 0
    assert db.scalar("SELECT max(abs(daily_return)) FROM portfolio_snapshots") < 0.06
    assert db.scalar("SELECT stddev(daily_return) FROM portfolio_snapshots") < 0.01
    # Leverage as documented: gross exposure between about 0.5x and 2x of NAV on the last day.
    low, high = db.one("SELECT min(gross_exposure / net_asset_value), max(gross_exposure / net_asset_value)"
                       " FROM portfolio_snapshots WHERE snapshot_date = %s", out["last_trading_day"])
    assert 0.3 < low and high < 2.0, (low, high)
