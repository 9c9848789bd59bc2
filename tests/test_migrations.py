"""Migrations: order, pre-check refusal, re-run after failure, rollback, baseline."""

from __future__ import annotations

import json

import psycopg
import pytest

from pnl.resources import migrations_dir
from tests.conftest import Db, run_cli

ALL = ["0001_baseline", "0002_operations", "0002b_rescue_audit", "0003_idempotency_precheck",
       "0004_snapshot_indexes_concurrently", "0005_unique_snapshot_constraint", "0006_drop_redundant_snapshot_index",
       "0007_dates_and_undo", "0008_valuation_marks", "0009_positive_closes", "0010_positions_covering_index",
       "0011_snapshot_fillfactor", "0012_equity_as_of",
       "0013_equity_as_of_follows_snapshots"]


def fingerprint(db: Db) -> dict[str, list[tuple]]:
    """The schema as the catalogs see it (yoyo's own tables excluded)."""
    return {
        "columns": db.all(
            "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, is_nullable,"
            " column_default FROM information_schema.columns WHERE table_schema = 'public'"
            " AND table_name NOT LIKE '%yoyo%' ORDER BY 1, 2"),
        "constraints": db.all(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT LIKE '%yoyo%'"
            " ORDER BY 1, 2"),
        "indexes": db.all(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename NOT LIKE '%yoyo%' ORDER BY 1, 2"),
        "triggers": db.all(
            "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal"
            " ORDER BY 1, 2"),
        "functions": db.all(
            "SELECT proname, pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            " ORDER BY 1"),
        "storage": db.all(
            "SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND reloptions IS NOT NULL AND relname NOT LIKE '%yoyo%' ORDER BY 1"),
    }


def applied(db: Db) -> list[str]:
    return [r[0] for r in db.all("SELECT migration_id FROM _yoyo_migration ORDER BY 1")]


def test_every_migration_has_a_rollback_file() -> None:
    forward = sorted(p for p in migrations_dir().glob("*.sql") if not p.name.endswith(".rollback.sql"))
    assert [p.stem for p in forward] == ALL
    for p in forward:
        assert p.with_name(p.stem + ".rollback.sql").exists(), p.name


def test_migrate_rollback_migrate_gives_the_same_schema(empty_db: Db) -> None:
    res = run_cli("migrate", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert applied(empty_db) == ALL
    full = fingerprint(empty_db)
    assert ("portfolio_snapshots", "uq_portfolio_snapshot_date", "UNIQUE (portfolio_id, snapshot_date)") \
        in full["constraints"]
    assert full["storage"] == [("portfolio_snapshots", ["fillfactor=90"])]

    res = run_cli("rollback", "--to", "0002b", "--yes", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert applied(empty_db) == ALL[:3]
    partial = fingerprint(empty_db)
    assert not any(c[1] == "uq_portfolio_snapshot_date" for c in partial["constraints"])
    assert not any(c[1] == "is_complete" for c in partial["columns"])

    assert run_cli("rollback", "--all", "--yes", dsn=empty_db.dsn).code == 0
    assert fingerprint(empty_db) == {"columns": [], "constraints": [], "indexes": [], "triggers": [], "functions": [],
                                     "storage": []}

    assert run_cli("migrate", dsn=empty_db.dsn).code == 0
    assert fingerprint(empty_db) == full


def test_rollback_without_yes_and_without_a_terminal_refuses(empty_db: Db) -> None:
    assert run_cli("migrate", dsn=empty_db.dsn).code == 0
    res = run_cli("rollback", "--to", "0002b", dsn=empty_db.dsn)
    assert res.code == 1 and "--yes" in res.err
    assert applied(empty_db) == ALL


def seed_duplicates(db: Db) -> None:
    pid = db.scalar("INSERT INTO portfolios (name, equity_balance) VALUES ('legacy', 100) RETURNING id")
    other = db.scalar("INSERT INTO portfolios (name, equity_balance) VALUES ('legacy2', 100) RETURNING id")
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, net_asset_value)"
               " VALUES (%s, '2026-01-05', 110), (%s, '2026-01-05', 121), (%s, '2026-01-05', 133.1),"
               " (%s, '2026-01-06', 99), (%s, '2026-01-06', 98), (%s, '2026-01-07', 97)",
               pid, pid, pid, other, other, other)


def test_precheck_refuses_duplicates_and_changes_nothing(empty_db: Db) -> None:
    assert run_cli("migrate", "--to", "0002b", dsn=empty_db.dsn).code == 0
    seed_duplicates(empty_db)
    schema_before = fingerprint(empty_db)
    rows_before = empty_db.all("SELECT * FROM portfolio_snapshots ORDER BY id")

    res = run_cli("migrate", dsn=empty_db.dsn)
    assert res.code == 1
    assert "Traceback" not in res.err
    assert "2 (portfolio_id, snapshot_date) groups" in res.err
    assert "e.g. portfolio 1 on 2026-01-05 has 3 rows" in res.err
    assert "pnl dedupe" in res.err and "Nothing was changed" in res.err
    assert applied(empty_db) == ALL[:3]
    assert fingerprint(empty_db) == schema_before
    assert empty_db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == rows_before

    # The batch refuses to run on the half-migrated schema, naming the fix.
    res = run_cli("batch", "run", "--date", "2026-01-08", dsn=empty_db.dsn)
    assert res.code == 1 and "pnl migrate" in res.err

    # Once the duplicates are gone, the same command succeeds.
    empty_db.execute("DELETE FROM portfolio_snapshots WHERE id NOT IN"
                     " (SELECT min(id) FROM portfolio_snapshots GROUP BY portfolio_id, snapshot_date)")
    res = run_cli("migrate", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert applied(empty_db) == ALL
    assert empty_db.scalar("SELECT bool_and(is_complete) FROM portfolio_snapshots") is True


def test_rerun_after_a_failed_concurrent_index_build(empty_db: Db) -> None:
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index; re-running works."""
    assert run_cli("migrate", "--to", "0003", dsn=empty_db.dsn).code == 0
    seed_duplicates(empty_db)
    # Simulate the failure: a concurrent build over duplicates fails and leaves the index INVALID.
    try:
        empty_db.execute("CREATE UNIQUE INDEX CONCURRENTLY uq_portfolio_snapshot_date"
                         " ON portfolio_snapshots (portfolio_id, snapshot_date)")
    except Exception:
        pass
    assert empty_db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'uq_portfolio_snapshot_date'::regclass"
                           ) is False
    res = run_cli("migrate", dsn=empty_db.dsn)
    assert res.code == 1 and "duplicate snapshots" in res.err
    assert applied(empty_db) == ALL[:4]

    empty_db.execute("DELETE FROM portfolio_snapshots WHERE id NOT IN"
                     " (SELECT min(id) FROM portfolio_snapshots GROUP BY portfolio_id, snapshot_date)")
    res = run_cli("migrate", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert empty_db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'uq_portfolio_snapshot_date'::regclass")
    assert empty_db.scalar("SELECT contype FROM pg_constraint WHERE conname = 'uq_portfolio_snapshot_date'") == "u"


def test_baseline_adopts_a_legacy_database_without_running_it(empty_db: Db) -> None:
    res = run_cli("migrate", "--baseline", dsn=empty_db.dsn)
    assert res.code == 2 and "portfolio_snapshots does not exist" in res.err
    # A legacy database: the old tables, made by hand, with no yoyo history.
    empty_db.execute("CREATE TABLE portfolios (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                     " name text NOT NULL, equity_balance numeric(20,4) NOT NULL DEFAULT 0,"
                     " created_at timestamptz NOT NULL DEFAULT now())")
    empty_db.execute("CREATE TABLE positions (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                     " portfolio_id bigint NOT NULL REFERENCES portfolios, symbol text NOT NULL,"
                     " quantity numeric NOT NULL, multiplier numeric NOT NULL DEFAULT 1, entry_date date NOT NULL,"
                     " entry_price numeric NOT NULL, exit_date date, exit_price numeric)")
    empty_db.execute("CREATE TABLE market_prices (symbol text, price_date date, close_price numeric NOT NULL,"
                     " PRIMARY KEY (symbol, price_date))")
    empty_db.execute("CREATE TABLE capital_flows (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                     " portfolio_id bigint NOT NULL REFERENCES portfolios, flow_date date NOT NULL,"
                     " amount numeric NOT NULL)")
    empty_db.execute("CREATE TABLE portfolio_snapshots (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                     " portfolio_id bigint NOT NULL REFERENCES portfolios, snapshot_date date NOT NULL,"
                     " net_asset_value numeric(20,4), daily_pnl numeric(20,4), daily_return numeric(20,10),"
                     " cumulative_pnl numeric(20,4), long_value numeric(20,4), short_value numeric(20,4),"
                     " gross_exposure numeric(20,4), net_exposure numeric(20,4), num_positions bigint,"
                     " created_at timestamptz NOT NULL DEFAULT now())")
    res = run_cli("migrate", "--baseline", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert applied(empty_db) == ALL
    # The baseline file did not run: its index is not there; the later migrations did run.
    assert empty_db.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_positions_portfolio'") == 0
    assert empty_db.scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'uq_portfolio_snapshot_date'") == 1


def test_migrate_to_an_unknown_id_is_bad_input(empty_db: Db) -> None:
    res = run_cli("migrate", "--to", "0999", dsn=empty_db.dsn)
    assert res.code == 2 and "no migration '0999'" in res.err
    assert empty_db.scalar("SELECT to_regclass('portfolios') IS NULL") is True


def test_file_name_order_is_yoyos_dependency_order() -> None:
    """Every command checks the schema by file name (no yoyo import); that order must be yoyo's."""
    from pnl.migrate import all_migrations, migration_ids
    assert migration_ids() == [m.id for m in all_migrations()] == ALL


def every_relation(db: Db) -> list[tuple]:
    return db.all("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                  " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2")


@pytest.mark.parametrize("args", [("--all",), ("--to", "0003")])
def test_rollback_on_an_unmigrated_database_creates_nothing(empty_db: Db, args: tuple[str, ...]) -> None:
    before = every_relation(empty_db)
    res = run_cli("rollback", *args, "--yes", "--json", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out) == {"rolled_back": []}
    assert every_relation(empty_db) == before == []       # not even yoyo's own tables


def test_status_on_an_unmigrated_database_creates_nothing(empty_db: Db) -> None:
    res = run_cli("status", "--json", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["schema_current"] is False
    assert every_relation(empty_db) == []


def test_rolling_back_is_complete_refuses_while_claims_are_unfinished(empty_db: Db) -> None:
    assert run_cli("migrate", dsn=empty_db.dsn).code == 0
    pid = empty_db.scalar("INSERT INTO portfolios (name) VALUES ('p') RETURNING id")
    empty_db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id,"
                     " claimed_at, lease_expires_at) VALUES (%s, '2026-06-01', false, 7, now() - interval '1 hour',"
                     " now() - interval '45 minutes')", pid)
    schema = fingerprint(empty_db)
    res = run_cli("rollback", "--to", "0002b", "--yes", dsn=empty_db.dsn)
    assert res.code == 1 and "1 unfinished claim(s)" in res.err and "pnl cleanup" in res.err
    assert "Traceback" not in res.err
    # Refused before anything was rolled back: every migration is still applied, the claim still a claim.
    assert applied(empty_db) == ALL and fingerprint(empty_db) == schema
    assert empty_db.scalar("SELECT is_complete FROM portfolio_snapshots") is False
    # The rollback file refuses by itself too (for a DBA running yoyo directly).
    rollback_sql = (migrations_dir() / "0003_idempotency_precheck.rollback.sql").read_text()
    with pytest.raises(psycopg.errors.ObjectInUse, match="unfinished claim"):
        empty_db.execute(rollback_sql)
    assert empty_db.scalar("SELECT is_complete FROM portfolio_snapshots") is False
    # Once `pnl cleanup` has cleared the claims, the rollback goes through.
    res = run_cli("cleanup", "--older-than", "30m", "--yes", dsn=empty_db.dsn)
    assert res.code == 0 and "deleted 1" in res.out
    res = run_cli("rollback", "--to", "0002b", "--yes", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert applied(empty_db) == ALL[:3]
