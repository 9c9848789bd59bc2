"""Dedupe: which row survives, nothing lost, restore, batching, dry run."""

from __future__ import annotations

import json

from tests.conftest import Db, run_cli

T0 = "2026-01-05 18:00:00+00"


def legacy_db(db: Db, to: str = "0002b") -> Db:
    assert run_cli("migrate", "--to", to, dsn=db.dsn).code == 0
    return db


def group(db: Db, pid: int, day: str, rows: list[tuple[object, str]]) -> list[int]:
    """Insert snapshot rows (nav, created_at offset) for one (portfolio, date); returns their ids."""
    return [db.scalar("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, net_asset_value, created_at)"
                      " VALUES (%s, %s, %s, %s::timestamptz + %s::interval) RETURNING id", pid, day, nav, T0, offset)
            for nav, offset in rows]


def survivors(db: Db) -> dict[tuple[int, str], int]:
    return {(p, d.isoformat()): i for p, d, i in db.all(
        "SELECT portfolio_id, snapshot_date, id FROM portfolio_snapshots ORDER BY id")}


def test_which_row_survives_each_edge_case(empty_db: Db) -> None:
    db = legacy_db(empty_db)
    pid = db.scalar("INSERT INTO portfolios (name, equity_balance) VALUES ('edge', -1) RETURNING id")
    negative = group(db, pid, "2026-01-05", [(-100, "0s"), (-50, "1s"), (-300, "2s")])
    nulls = group(db, pid, "2026-01-06", [(None, "0s"), (120, "1s"), (130, "2s")])
    zeros = group(db, pid, "2026-01-07", [(0, "5s"), (0, "0s"), (0, "0s")])
    same_time = group(db, pid, "2026-01-08", [(5, "0s"), (6, "0s"), (7, "0s")])
    ten = group(db, pid, "2026-01-09", [(1000 + i, f"{9 - i}s") for i in range(10)])
    single = group(db, pid, "2026-01-10", [(42, "0s")])
    everything = db.all("SELECT * FROM portfolio_snapshots ORDER BY id")

    res = run_cli("dedupe", "--yes", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert (out["groups"], out["deleted"], out["remaining_duplicate_groups"]) == (5, 2 + 2 + 2 + 2 + 9, 0)
    kept = survivors(db)
    assert kept[(pid, "2026-01-05")] == negative[0]     # earliest, not "highest NAV" (-50)
    assert kept[(pid, "2026-01-06")] == nulls[1]        # a real NAV beats NULL, then earliest
    assert kept[(pid, "2026-01-07")] == zeros[1]        # all zero: earliest, then lowest id
    assert kept[(pid, "2026-01-08")] == same_time[0]    # identical created_at: lowest id
    assert kept[(pid, "2026-01-09")] == ten[9]          # the last inserted was created first
    assert kept[(pid, "2026-01-10")] == single[0]
    # Nothing lost: every deleted row is in the audit, whole, with the row kept in its place.
    archived = db.all("SELECT snapshot_id, kept_snapshot_id, row_data FROM snapshot_dedupe_audit"
                      " WHERE rescue_run_id = %s ORDER BY snapshot_id", out["run_id"])
    assert len(archived) == 17
    assert {a[0] for a in archived} | set(kept.values()) == {r[0] for r in everything}
    by_id = {r[0]: r for r in everything}
    for snapshot_id, kept_id, row_data in archived:
        assert row_data["id"] == snapshot_id and kept_id in kept.values()
        assert row_data["portfolio_id"] == by_id[snapshot_id][1]

    res = run_cli("dedupe", "--restore", str(out["run_id"]), "--yes", dsn=db.dsn)
    assert res.code == 0 and "restored 17" in res.out, res.err
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == everything
    assert db.scalar("SELECT status FROM rescue_runs WHERE id = %s", out["run_id"]) == "restored"
    again = run_cli("dedupe", "--restore", str(out["run_id"]), "--yes", dsn=db.dsn)
    assert again.code == 0 and "already restored" in again.out


def test_a_complete_row_beats_an_earlier_incomplete_one(empty_db: Db) -> None:
    db = legacy_db(empty_db, to="0003")        # is_complete exists, the unique index does not yet
    pid = db.scalar("INSERT INTO portfolios (name) VALUES ('c') RETURNING id")
    ids = group(db, pid, "2026-01-05", [(10, "0s"), (11, "1s")])
    db.execute("UPDATE portfolio_snapshots SET is_complete = false WHERE id = %s", ids[0])
    assert run_cli("dedupe", "--yes", dsn=db.dsn).code == 0
    assert list(survivors(db).values()) == [ids[1]]


def test_dry_run_shows_the_plan_and_changes_nothing(empty_db: Db) -> None:
    db = legacy_db(empty_db)
    pid = db.scalar("INSERT INTO portfolios (name) VALUES ('d') RETURNING id")
    ids = group(db, pid, "2026-01-05", [(110, "0s"), (121, "1s"), (133.1, "2s")])
    before = db.all("SELECT * FROM portfolio_snapshots ORDER BY id")
    res = run_cli("dedupe", "--dry-run", dsn=db.dsn)
    assert res.code == 0, res.err
    assert "1 duplicate group(s)" in res.out and "nothing was changed" in res.out
    assert f"keep #{ids[0]} (NAV 110" in res.out
    assert f"delete #{ids[1]}" in res.out and f"delete #{ids[2]}" in res.out
    out = json.loads(run_cli("dedupe", "--dry-run", "--json", dsn=db.dsn).out)
    assert out["dry_run"] and out["deleted"] == 2 and out["run_id"] is None
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == before
    assert db.scalar("SELECT count(*) FROM snapshot_dedupe_audit") == 0
    assert db.scalar("SELECT count(*) FROM rescue_runs") == 0
    # Without --yes and without a terminal it refuses, and changes nothing.
    res = run_cli("dedupe", dsn=db.dsn)
    assert res.code == 1 and "--yes" in res.err
    assert db.all("SELECT * FROM portfolio_snapshots ORDER BY id") == before


def test_batches_of_groups_each_commit_and_resume(empty_db: Db) -> None:
    db = legacy_db(empty_db)
    pid = db.scalar("INSERT INTO portfolios (name) VALUES ('b') RETURNING id")
    for day in range(1, 8):
        group(db, pid, f"2026-02-{day:02d}", [(day, "0s"), (day * 2, "1s")])
    res = run_cli("dedupe", "--yes", "--batch-size", "3", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["deleted"] == 7
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 7
    assert db.all("SELECT DISTINCT net_asset_value FROM portfolio_snapshots ORDER BY 1")[0][0] == 1


def test_dedupe_needs_the_audit_migration(empty_db: Db) -> None:
    assert run_cli("migrate", "--to", "0001", dsn=empty_db.dsn).code == 0
    res = run_cli("dedupe", "--dry-run", dsn=empty_db.dsn)
    assert res.code == 1 and "pnl migrate" in res.err and "Traceback" not in res.err


def test_restore_refuses_once_the_constraint_exists(empty_db: Db) -> None:
    db = legacy_db(empty_db)
    pid = db.scalar("INSERT INTO portfolios (name) VALUES ('r') RETURNING id")
    group(db, pid, "2026-01-05", [(1, "0s"), (2, "1s")])
    run_id = json.loads(run_cli("dedupe", "--yes", "--json", dsn=db.dsn).out)["run_id"]
    assert run_cli("migrate", dsn=db.dsn).code == 0
    res = run_cli("dedupe", "--restore", str(run_id), "--yes", dsn=db.dsn)
    assert res.code == 1 and "uq_portfolio_snapshot_date" in res.err
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 1
    assert run_cli("dedupe", "--restore", "999", "--yes", dsn=db.dsn).code == 2
