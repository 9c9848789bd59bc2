"""portfolios.equity_as_of (migration 0012): every statement that sets equity
sets the date of the snapshot it came from, so `pnl status` reads chain ends
from portfolios alone; `pnl verify` flags a portfolio where it is wrong, and
`pnl repair` puts it right. A database migrated before 0012 keeps working:
NULL means "probe", and the batch role may write the new column."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

import psycopg
import pytest

from pnl import batch
from pnl.db import DbSettings, connect_pool, planned_transaction
from pnl.queries import sql
from tests.conftest import Db, quiet_stat, run_cli, run_in_process
from tests.data import add_portfolio, random_book
from tests.procs import TWO_STEP_ONLY_SQL, finish, start_batch, wait_for
from tests.reference import replay
from tests.test_cli import assert_one_line_error
from tests.test_roles import Roles, roles  # noqa: F401  (the fixture)

CALENDAR = [date(2026, 6, 1) + timedelta(days=i) for i in range(6)]


def chain_ends(db: Db) -> list[tuple]:
    """Per portfolio: (id, equity_as_of, equity_balance, latest complete snapshot date, its NAV)."""
    return db.all("SELECT p.id, p.equity_as_of, p.equity_balance, l.snapshot_date, l.net_asset_value"
                  "  FROM portfolios AS p"
                  "  LEFT JOIN LATERAL (SELECT s.snapshot_date, s.net_asset_value FROM portfolio_snapshots AS s"
                  "                      WHERE s.portfolio_id = p.id AND s.is_complete"
                  "                      ORDER BY s.snapshot_date DESC LIMIT 1) AS l ON true"
                  " ORDER BY p.id")


def assert_as_of_is_chain_end(db: Db, expected: date | None) -> None:
    rows = chain_ends(db)
    assert rows
    for pid, as_of, equity, last, nav in rows:
        assert (as_of, last) == (expected, expected), pid
        if last is not None:
            assert equity == nav, pid


def hold_slot(db: Db, pid: int, day: date) -> int:
    """Another run, alive, holds pid's slot of `day` (an unfinished claim with an hour's
    lease): returns that run's id."""
    holder = db.scalar("INSERT INTO batch_runs (run_date, host, pid, lease) VALUES (%s, 'elsewhere', 1,"
                       " interval '1 hour') RETURNING id", day)
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id,"
               " claimed_at, lease_expires_at) VALUES (%s, %s, false, %s, now(), now() + interval '1 hour')",
               pid, day, holder)
    return holder


def run(db: Db, *args: str) -> dict:
    res = run_cli(*args, "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_every_writer_keeps_equity_as_of_at_the_chain_end(db: Db) -> None:
    random_book(db.conn, 6, CALENDAR, seed=41)
    assert {r[1] for r in chain_ends(db)} == {None}                 # never run: NULL
    # The one-write path (a catch-up over three dates).
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[2].isoformat())
    assert_as_of_is_chain_end(db, CALENDAR[2])
    # The two-step path (claim, then finalize_claimed): the one-write statement is refused.
    db.conn.execute(TWO_STEP_ONLY_SQL)
    run(db, "batch", "run", "--date", CALENDAR[3].isoformat())
    db.conn.execute("DROP TRIGGER pnl_test_two_step_only ON portfolio_snapshots")
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE snapshot_date = %s"
                     " AND claimed_at < completed_at", CALENDAR[3]) == 6
    assert_as_of_is_chain_end(db, CALENDAR[3])
    run(db, "batch", "run", "--date", CALENDAR[5].isoformat())
    assert_as_of_is_chain_end(db, CALENDAR[5])
    # Undo moves it back to the last snapshot left; restore puts it forward again.
    undo = run(db, "batch", "undo", "--from", CALENDAR[4].isoformat(), "--yes")
    assert_as_of_is_chain_end(db, CALENDAR[3])
    run(db, "batch", "undo", "--restore", str(undo["run_id"]), "--yes")
    assert_as_of_is_chain_end(db, CALENDAR[5])
    # Undo of everything: no snapshot left, equity is the opening again, not a snapshot's NAV.
    run(db, "batch", "undo", "--from", CALENDAR[0].isoformat(), "--yes")
    assert_as_of_is_chain_end(db, None)


def test_restore_does_not_vouch_for_an_equity_that_was_wrong_before_the_undo(db: Db) -> None:
    random_book(db.conn, 3, CALENDAR, seed=42)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[2].isoformat())
    pid = db.scalar("SELECT min(id) FROM portfolios")
    db.execute("UPDATE portfolios SET equity_balance = equity_balance + 5 WHERE id = %s", pid)   # a legacy +=
    undo = run(db, "batch", "undo", "--from", CALENDAR[2].isoformat(), "--yes")
    run(db, "batch", "undo", "--restore", str(undo["run_id"]), "--yes")
    ends = {r[0]: r for r in chain_ends(db)}
    assert ends[pid][1] is None and ends[pid][2] == ends[pid][4] + 5          # its wrong equity, not vouched for
    assert all(r[1] == CALENDAR[2] for p, r in ends.items() if p != pid)


def test_status_reads_equity_as_of_verify_checks_it_and_repair_fixes_it(db: Db) -> None:
    random_book(db.conn, 4, CALENDAR[:3], seed=43)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[2].isoformat())
    a, b, c, d = [p for (p,) in db.all("SELECT id FROM portfolios ORDER BY id")]
    up_to_date = {"latest_price_date": CALENDAR[2].isoformat(), "portfolios": 4, "up_to_date": 4,
                  "never_run": 0, "behind": 0, "lag": []}
    assert run(db, "status", "--no-verify")["chain"] == up_to_date
    # NULL (a database migrated before 0012, not run since): status probes the snapshots instead.
    db.execute("UPDATE portfolios SET equity_as_of = NULL WHERE id IN (%s, %s)", a, b)
    assert run(db, "status", "--no-verify")["chain"] == up_to_date
    assert run_cli("verify", dsn=db.dsn).code == 0                  # NULL is not an error
    # A wrong date (snapshots written by something that does not set it): status believes it,
    # which shows it reads the column; verify names the portfolio, and a repair puts it right.
    db.execute("UPDATE portfolios SET equity_as_of = %s WHERE id = %s", CALENDAR[0], c)
    chain = run(db, "status", "--no-verify")["chain"]
    assert (chain["up_to_date"], chain["lag"]) == (3, [{"dates_behind": 2, "portfolios": 1}])
    res = run_cli("verify", "--json", dsn=db.dsn)
    assert res.code == 1
    check = next(x for x in json.loads(res.out)["checks"] if x["check"] == "equity_as_of_mismatch")
    assert check["rows"] == 1 and check["examples"][0]["portfolio_id"] == c
    assert check["examples"][0]["equity_as_of"] == CALENDAR[0].isoformat()
    navs = db.all("SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots ORDER BY 1, 2")
    res = run_cli("repair", "--all-broken", "--yes", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert db.all("SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots ORDER BY 1, 2") \
        == navs                                                      # nothing recomputed differently
    assert db.scalar("SELECT equity_as_of FROM portfolios WHERE id = %s", c) == CALENDAR[2]
    assert run_cli("verify", dsn=db.dsn).code == 0
    assert run(db, "status", "--no-verify")["chain"] == up_to_date
    # Snapshots deleted by hand: 0013's trigger forgets the date they were the chain of.
    db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s", d)
    assert db.scalar("SELECT equity_as_of FROM portfolios WHERE id = %s", d) is None
    # The one thing no trigger sees: the column itself set by hand to a date with no snapshot.
    # Verify says so (no repair can replay it).
    db.execute("UPDATE portfolios SET equity_as_of = %s WHERE id = %s", CALENDAR[2], d)
    check = next(x for x in json.loads(run_cli("verify", "--json", dsn=db.dsn).out)["checks"]
                 if x["check"] == "equity_as_of_mismatch")
    assert check["rows"] == 1 and check["examples"][0]["latest_snapshot_date"] is None


def test_a_database_migrated_before_0012_keeps_its_batch_role_and_its_chains(roles: Roles) -> None:  # noqa: F811
    db = roles.admin
    assert roles.cli(roles.owner, "migrate", "--to", "0011").code == 0
    roles.run_script()                                               # roles made before 0012 existed
    # The owner migrates; the roles script is NOT run again: 0012 grants the new column itself.
    res = roles.cli(roles.owner, "migrate", "--json")
    assert res.code == 0, res.err
    assert db.scalar("SELECT has_column_privilege(%s, 'portfolios', 'equity_as_of', 'UPDATE')", roles.batch)
    assert db.scalar("SELECT has_column_privilege(%s, 'portfolios', 'name', 'UPDATE')", roles.batch) is False
    seeded = roles.cli(roles.owner, "seed", "--portfolios", "8", "--positions", "3", "--days", "6", "--json")
    assert seeded.code == 0, seeded.err
    days = [r[0] for r in db.all("SELECT DISTINCT price_date FROM market_prices ORDER BY 1")]
    res = roles.cli(roles.batch, "batch", "run", "--date", days[-2].isoformat())
    assert res.code == 0, res.err
    assert_as_of_is_chain_end(db, days[-2])
    # Chains written before 0012 (no backfill: NULL): status probes, verify is content.
    db.execute("UPDATE portfolios SET equity_as_of = NULL")
    status = json.loads(roles.cli(roles.readonly, "status", "--no-verify", "--json").out)["chain"]
    assert (status["portfolios"], status["up_to_date"], status["behind"]) == (8, 0, 8)
    assert status["lag"] == [{"dates_behind": 1, "portfolios": 8}]
    assert roles.cli(roles.readonly, "verify").code == 0
    res = roles.cli(roles.batch, "batch", "run", "--date", days[-1].isoformat())
    assert res.code == 0, res.err
    assert_as_of_is_chain_end(db, days[-1])
    roles.run_script()                                               # the script, re-run, is still fine
    assert db.scalar("SELECT has_column_privilege(%s, 'portfolios', 'equity_as_of', 'UPDATE')", roles.batch)
    # Rolled back: the column and its grant go; this pnl then refuses to run until migrated again.
    res = roles.cli(roles.owner, "rollback", "--to", "0011", "--yes")
    assert res.code == 0, res.err
    assert db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'portfolios'"
                     " AND column_name = 'equity_as_of'") == 0
    assert_one_line_error(roles.cli(roles.batch, "batch", "run", "--date", days[-1].isoformat()), 1,
                          "0012_equity_as_of", "run `pnl migrate` first")
    roles.run_script()                                               # before 0012: the column grant is skipped
    assert roles.cli(roles.owner, "migrate").code == 0
    res = roles.cli(roles.batch, "batch", "run", "--date", days[-1].isoformat(), "--json")
    assert res.code == 0 and json.loads(res.out)["already_done"] == 8, res.err


def test_status_and_verify_on_a_database_not_yet_migrated_to_0012(empty_db: Db) -> None:
    assert run_cli("migrate", "--to", "0011", dsn=empty_db.dsn).code == 0
    random_book(empty_db.conn, 3, CALENDAR, seed=5)
    res = run_cli("status", "--json", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["chain"]["never_run"] == 3
    checks = {c["check"]: c for c in json.loads(run_cli("verify", "--json", dsn=empty_db.dsn).out)["checks"]}
    assert checks["equity_mismatch"]["error"] is None                  # still checked before 0012
    assert checks["equity_as_of_mismatch"]["error"].startswith("not run")


def test_undo_runs_are_restored_newest_first_and_leave_the_chain_end_right(db: Db) -> None:
    random_book(db.conn, 3, CALENDAR, seed=7)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[5].isoformat())
    before = db.all("SELECT id, equity_balance, equity_as_of FROM portfolios ORDER BY id")
    first = run(db, "batch", "undo", "--from", CALENDAR[4].isoformat(), "--yes")     # removes 4, 5
    second = run(db, "batch", "undo", "--from", CALENDAR[2].isoformat(), "--yes")    # then 2, 3
    # The older undo first would put 4 and 5 back while 2 and 3 are out: a hole, and equity from the wrong end.
    res = run_cli("batch", "undo", "--restore", str(first["run_id"]), "--yes", dsn=db.dsn)
    assert_one_line_error(res, 1, f"#{second['run_id']}", "newest first", "nothing was changed")
    assert db.scalar("SELECT max(snapshot_date) FROM portfolio_snapshots") == CALENDAR[1]
    run(db, "batch", "undo", "--restore", str(second["run_id"]), "--yes")
    assert_as_of_is_chain_end(db, CALENDAR[3])
    run(db, "batch", "undo", "--restore", str(first["run_id"]), "--yes")
    assert_as_of_is_chain_end(db, CALENDAR[5])
    assert db.all("SELECT id, equity_balance, equity_as_of FROM portfolios ORDER BY id") == before
    assert run_cli("verify", dsn=db.dsn).code == 0


def test_restore_never_vouches_for_a_date_before_the_chain_end(db: Db) -> None:
    """A later complete snapshot written outside pnl after an undo: restore refuses (its
    refilled check covers every date from the undo's on, not only the removed ones), so
    the restored rows never sit under it; and restore_snapshots.sql would not take the
    restored equity for the chain end's anyway (defence in depth)."""
    random_book(db.conn, 2, CALENDAR, seed=8)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[3].isoformat())
    undo = run(db, "batch", "undo", "--from", CALENDAR[3].isoformat(), "--yes")
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, net_asset_value)"
               " SELECT id, %s, true, 1 FROM portfolios", CALENDAR[5])
    res = run_cli("batch", "undo", "--restore", str(undo["run_id"]), "--yes", dsn=db.dsn)
    assert res.code == 1 and "filled again" in res.err and f"--from {CALENDAR[5]}" in res.err, res.err
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE snapshot_date = %s", CALENDAR[3]) == 0


def test_a_writer_that_does_not_know_equity_as_of_cannot_leave_it_stale(db: Db) -> None:
    """A pnl older than 0012 on another host, or the legacy batch: the guard trigger clears the date."""
    random_book(db.conn, 3, CALENDAR[:4], seed=44)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[2].isoformat())
    a, b, c = [p for (p,) in db.all("SELECT id FROM portfolios ORDER BY id")]
    # An older pnl writes a's next date and sets its equity, saying nothing of equity_as_of.
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, opening_equity, daily_pnl,"
               " capital_flow, net_asset_value) SELECT portfolio_id, %s, true, net_asset_value, 1, 0,"
               " net_asset_value + 1 FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s",
               CALENDAR[3], a, CALENDAR[2])
    db.execute("UPDATE portfolios SET equity_balance = equity_balance + 1 WHERE id = %s", a)
    # The legacy batch's `equity_balance += daily_pnl` on b (no snapshot).
    db.execute("UPDATE portfolios SET equity_balance = equity_balance + 7 WHERE id = %s", b)
    # Setting equity to what it already is, or setting both columns, is not such a write.
    db.execute("UPDATE portfolios SET equity_balance = equity_balance WHERE id = %s", c)
    as_of = dict(db.all("SELECT id, equity_as_of FROM portfolios"))
    assert as_of == {a: None, b: None, c: CALENDAR[2]}
    # So status is right for a (probed: up to date) and c (read: 1 date behind); b's chain ended at CALENDAR[2].
    chain = run(db, "status", "--no-verify")["chain"]
    assert (chain["up_to_date"], chain["lag"]) == (1, [{"dates_behind": 1, "portfolios": 2}])
    checks = {x["check"]: x for x in json.loads(run_cli("verify", "--json", dsn=db.dsn).out)["checks"]}
    assert checks["equity_as_of_mismatch"]["rows"] == 0                  # nothing stale left to flag
    assert [e["portfolio_id"] for e in checks["equity_mismatch"]["examples"]] == [b]   # the legacy +=
    db.execute("UPDATE portfolios SET equity_balance = equity_balance - 7, equity_as_of = %s WHERE id = %s",
               CALENDAR[2], b)
    assert db.scalar("SELECT equity_as_of FROM portfolios WHERE id = %s", b) == CALENDAR[2]


def test_the_plan_trusts_equity_as_of_only_as_far_as_the_write_checks_it(db: Db) -> None:
    """A run plans each chain's end from portfolios.equity_as_of. A snapshot deleted by hand
    behind pnl's back clears it (0013's trigger: the plan probes). Where it is wrong anyway
    (the column set back by hand), the one-write statement refuses the stale plan and the
    claiming path, which probes the snapshots, catches the chain up: every NAV is still the
    replay's, nothing twice."""
    book = random_book(db.conn, 6, CALENDAR, seed=43)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[2].isoformat())
    ahead, behind, *_ = sorted(book.balances)
    # ahead: its chain really ends at CALENDAR[1], equity_as_of still says CALENDAR[2]
    db.execute("UPDATE portfolios AS p SET equity_balance = s.net_asset_value"
               "  FROM portfolio_snapshots AS s"
               " WHERE s.portfolio_id = p.id AND p.id = %s AND s.snapshot_date = %s", ahead, CALENDAR[1])
    db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s", ahead, CALENDAR[2])
    assert db.scalar("SELECT equity_as_of FROM portfolios WHERE id = %s", ahead) is None
    # behind: its chain ends at CALENDAR[2], equity_as_of says CALENDAR[0]
    db.execute("UPDATE portfolios SET equity_as_of = %s WHERE id = %s", CALENDAR[0], behind)
    # Verify names behind (NULL is not an error); a run of CALENDAR[2] fills ahead's hole, and nothing else.
    res = run_cli("verify", "--json", dsn=db.dsn)
    assert res.code == 1
    check = next(x for x in json.loads(res.out)["checks"] if x["check"] == "equity_as_of_mismatch")
    assert sorted(e["portfolio_id"] for e in check["examples"]) == [behind]
    out = run(db, "batch", "run", "--date", CALENDAR[2].isoformat())
    assert (out["processed"], out["already_done"], out["failed"]) == (1, 5, 0)
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s",
                     ahead, CALENDAR[2]) == 1
    # Deleted again behind pnl's back (equity untouched, so only 0013's trigger clears
    # equity_as_of): the next date's run fills the hole first, in date order.
    db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s", ahead, CALENDAR[2])
    out = run(db, "batch", "run", "--date", CALENDAR[4].isoformat())
    assert out["failed"] == 0 and out["status"] == "succeeded", out
    by_date = {d["date"]: d for d in out["dates"]}
    assert by_date[CALENDAR[2].isoformat()]["processed"] == 1          # ahead's hole, filled
    assert [by_date[d.isoformat()]["processed"] for d in CALENDAR[3:5]] == [6, 6]
    navs = {(pid, day): nav for pid, day, nav in db.all(
        "SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots")}
    assert len(navs) == 6 * 5 == db.scalar("SELECT count(*) FROM portfolio_snapshots")
    for pid, balance in book.balances.items():
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], CALENDAR[:5])
        assert [navs[(pid, s.day)] for s in chain] == [s.nav for s in chain], pid
    assert_as_of_is_chain_end(db, CALENDAR[4])


def test_where_a_chain_starts_is_still_reported_exactly_for_an_uneven_book(db: Db) -> None:
    """The plan skips the probe for where a chain starts when the chain ends on or before
    the earliest date the run reports. In a book whose chains end on different dates,
    one started late must still be before_chain on the dates before its start."""
    random_book(db.conn, 4, CALENDAR, seed=44)
    p1, p2, p3, p4 = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[1].isoformat(),
        "--portfolio", str(p1), "--portfolio", str(p2), "--portfolio", str(p3))
    run(db, "batch", "run", "--date", CALENDAR[3].isoformat(), "--portfolio", str(p2))      # ahead: C0..C3
    run(db, "batch", "run", "--date", CALENDAR[3].isoformat(), "--portfolio", str(p4))      # starts at C3
    out = run(db, "batch", "run", "--date", CALENDAR[4].isoformat())
    buckets = {d["date"]: (d["processed"], d["already_done"], d["before_chain"]) for d in out["dates"]}
    assert buckets == {CALENDAR[2].isoformat(): (2, 1, 1),
                       CALENDAR[3].isoformat(): (2, 2, 0),
                       CALENDAR[4].isoformat(): (4, 0, 0)}, buckets


def test_snapshots_and_marks_truncated_behind_pnls_back_are_computed_again(db: Db) -> None:
    """TRUNCATE leaves equity as it was, so 0012's guard trigger does not fire; 0013's
    TRUNCATE trigger clears equity_as_of. A run of the same dates must find them owed, mark
    them and compute them (found by the marks property test: the run failed with 'no
    valuation mark')."""
    book = random_book(db.conn, 4, CALENDAR, seed=45)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[1].isoformat())
    equity = dict(db.all("SELECT id, equity_balance FROM portfolios"))
    db.execute("TRUNCATE portfolio_snapshots, batch_runs, valuation_marks RESTART IDENTITY")
    assert {r[1] for r in chain_ends(db)} == {None}                 # forgotten: the run probes
    out = run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[1].isoformat())
    assert (out["run"]["processed"], out["run"]["failed"], out["run"]["status"]) == (8, 0, "succeeded"), out
    navs = {(pid, day): nav for pid, day, nav in db.all(
        "SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots")}
    for pid in book.balances:
        chain = replay(equity[pid], book.positions[pid], book.prices, book.flows[pid], CALENDAR[:2])
        assert [navs[(pid, s.day)] for s in chain] == [s.nav for s in chain], pid
    assert_as_of_is_chain_end(db, CALENDAR[1])


def test_the_database_forgets_equity_as_of_when_its_snapshot_goes(db: Db) -> None:
    """0013's triggers: whatever removes, reopens or moves the snapshot equity_as_of names,
    or one before it, clears equity_as_of (the run then probes). What leaves that snapshot
    alone leaves it alone, so pnl's own claims, releases and finalizes cost no probe."""
    random_book(db.conn, 6, CALENDAR, seed=46)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[2].isoformat())
    p1, p2, p3, p4, p5, p6 = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]

    def as_of() -> dict[int, date | None]:
        return dict(db.all("SELECT id, equity_as_of FROM portfolios"))

    # Untouched: a claim after the chain end, inserted and deleted; a NAV edited in place;
    # a lease renewed; a complete snapshot's is_complete "set" to what it is.
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete) VALUES (%s, %s, false)",
               p1, CALENDAR[3])
    db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s", p1, CALENDAR[3])
    db.execute("UPDATE portfolio_snapshots SET net_asset_value = net_asset_value WHERE portfolio_id = %s", p1)
    db.execute("UPDATE portfolio_snapshots SET is_complete = true WHERE portfolio_id = %s", p1)
    assert set(as_of().values()) == {CALENDAR[2]}
    # Cleared: a snapshot before the chain end deleted (p2), the chain end reopened as a claim (p3),
    # moved to another date (p4), DELETE of two portfolios' rows in one statement (p5, p6).
    db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s", p2, CALENDAR[0])
    db.execute("UPDATE portfolio_snapshots SET is_complete = false WHERE portfolio_id = %s AND snapshot_date = %s",
               p3, CALENDAR[2])
    db.execute("UPDATE portfolio_snapshots SET snapshot_date = %s WHERE portfolio_id = %s AND snapshot_date = %s",
               CALENDAR[4], p4, CALENDAR[2])
    db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id IN (%s, %s) AND snapshot_date = %s",
               p5, p6, CALENDAR[2])
    assert as_of() == {p1: CALENDAR[2], p2: None, p3: None, p4: None, p5: None, p6: None}
    # Undo deletes snapshots and sets equity_as_of before them in one statement: it stays set.
    db.execute("UPDATE portfolio_snapshots SET snapshot_date = %s WHERE portfolio_id = %s AND snapshot_date = %s",
               CALENDAR[2], p4, CALENDAR[4])
    res = run_cli("batch", "undo", "--from", CALENDAR[1].isoformat(), "--portfolio", str(p1), "--yes", dsn=db.dsn)
    assert res.code == 0, res.err
    assert as_of()[p1] == CALENDAR[0]
    # A session whose temporary table is named portfolios (as pnl's dry runs make) still
    # clears the real one: the functions' search_path is pinned.
    with psycopg.connect(db.dsn) as shadow:
        shadow.execute("CREATE TEMP TABLE portfolios AS SELECT * FROM public.portfolios")
        shadow.execute("DELETE FROM public.portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s",
                       (p1, CALENDAR[0]))
        assert shadow.execute("SELECT equity_as_of FROM pg_temp.portfolios WHERE id = %s",
                              (p1,)).fetchone() == (CALENDAR[0],)
    assert as_of()[p1] is None
    # TRUNCATE forgets every one.
    db.execute("UPDATE portfolios SET equity_as_of = %s WHERE id = %s", CALENDAR[1], p2)
    db.execute("TRUNCATE portfolio_snapshots")
    assert set(as_of().values()) == {None}


def test_migrating_to_0013_forgets_an_equity_as_of_that_is_already_wrong(empty_db: Db) -> None:
    """Before 0013 a deleted snapshot could leave equity_as_of naming nothing (the run
    re-checked it with a probe); from 0013 on the run trusts it, so the migration clears
    every one that names no complete snapshot, and only those."""
    assert run_cli("migrate", dsn=empty_db.dsn).code == 0
    random_book(empty_db.conn, 3, CALENDAR, seed=47)
    run(empty_db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[1].isoformat())
    res = run_cli("rollback", "--to", "0012", "--yes", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    a, b, c = [r[0] for r in empty_db.all("SELECT id FROM portfolios ORDER BY id")]
    empty_db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s", a, CALENDAR[1])
    empty_db.execute("UPDATE portfolio_snapshots SET is_complete = false WHERE portfolio_id = %s"
                     " AND snapshot_date = %s", b, CALENDAR[1])
    assert set(dict(empty_db.all("SELECT id, equity_as_of FROM portfolios")).values()) == {CALENDAR[1]}
    res = run_cli("migrate", dsn=empty_db.dsn)
    assert res.code == 0, res.err
    assert dict(empty_db.all("SELECT id, equity_as_of FROM portfolios")) == {a: None, b: None, c: CALENDAR[1]}


def test_a_re_run_skips_planning_chunks_whose_chains_all_end_on_its_date(db: Db) -> None:
    """A chunk whose portfolios all have equity_as_of = D owes nothing for a run of D: the
    run counts it done from its listing and does not plan it (no probe of pk_portfolios
    per portfolio). A chunk with one chain behind is planned and caught up as before, and
    the report is the plan's either way."""
    random_book(db.conn, 40, CALENDAR, seed=51)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[2].isoformat())
    ids = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    # one portfolio behind, in the last chunk of 10
    run(db, "batch", "undo", "--from", CALENDAR[2].isoformat(), "--portfolio", str(ids[-1]), "--yes")

    def pk_probes(moved_from: int | None = None) -> int:
        return quiet_stat(db, "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'pk_portfolios'",
                          None if moved_from is None else (moved_from,))[0]

    out = run(db, "batch", "run", "--date", CALENDAR[2].isoformat(), "--chunk-size", "10")
    assert (out["processed"], out["already_done"], out["failed"], out["status"]) == (1, 39, 0, "succeeded")
    assert out["dates"] == [{"date": CALENDAR[2].isoformat(), "processed": 1, "already_done": 39,
                             "before_chain": 0, "held": 0, "failed": 0, "lost": 0}]
    before = pk_probes()
    out = run(db, "batch", "run", "--date", CALENDAR[2].isoformat(), "--chunk-size", "10")
    assert (out["processed"], out["already_done"], out["status"]) == (0, 40, "succeeded")
    # measured: 9 (four listings, the run's own bookkeeping); each chunk planned adds its 10
    # portfolios' equity_as_of probes of pk_portfolios (all four planned: 49)
    assert pk_probes(before) - before < 19
    # A chain that starts after the date is before_chain, planned or not.
    new = db.scalar("INSERT INTO portfolios (name, equity_balance) VALUES ('late', 1000) RETURNING id")
    run(db, "batch", "run", "--date", CALENDAR[3].isoformat(), "--portfolio", str(new))
    out = run(db, "batch", "run", "--date", CALENDAR[2].isoformat(), "--chunk-size", "10")
    assert (out["already_done"], out["dates"][0]["before_chain"]) == (40, 1), out


def test_an_undo_never_sets_equity_as_of_to_a_snapshot_deleted_meanwhile(db: Db) -> None:
    """Found by the adversarial pass: a hand DELETE of a snapshot, in a transaction still
    open while `pnl batch undo` runs, and equity_as_of NULL (so the DELETE's trigger had
    nothing to clear and locked nothing). The undo set equity_as_of to the snapshot being
    deleted; a run of that date then took it for done. The undo now waits for that
    transaction and sets equity back to the snapshot before it."""
    book = random_book(db.conn, 3, CALENDAR, seed=52)
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[3].isoformat())
    p1 = min(book.balances)
    db.execute("UPDATE portfolios SET equity_as_of = NULL WHERE id = %s", p1)
    nav_c1 = db.scalar("SELECT net_asset_value FROM portfolio_snapshots WHERE portfolio_id = %s"
                       " AND snapshot_date = %s", p1, CALENDAR[1])
    with psycopg.connect(db.dsn) as hand:                          # a DBA's session, not autocommit
        hand.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s",
                     (p1, CALENDAR[2]))
        undo = start_batch(db.dsn, "--from", CALENDAR[3].isoformat(), "--portfolio", str(p1), "--yes",
                           cmd=("batch", "undo"))
        try:
            wait_for(lambda: db.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                       " AND wait_event_type = 'Lock'") == 1 or undo.poll() is not None,
                     what="the undo to wait for the open DELETE")
            assert undo.poll() is None, "the undo did not wait for the transaction deleting its new chain end"
        except BaseException:
            undo.kill()
            undo.communicate()
            raise
        hand.commit()
    code, out, err = finish(undo)
    assert code == 0, err
    assert db.one("SELECT equity_as_of, equity_balance FROM portfolios WHERE id = %s", p1) == (CALENDAR[1], nav_c1)
    out = run(db, "batch", "run", "--date", CALENDAR[3].isoformat())
    assert out["failed"] == 0 and out["status"] == "succeeded", out
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s AND is_complete", p1) == 4
    assert_as_of_is_chain_end(db, CALENDAR[3])


def test_a_daily_run_writes_chunks_whose_chains_all_end_the_price_date_before_without_planning(
        db: Db, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The everyday run: every chain of a chunk ends on the price date before D (or the
    portfolio was never run and starts on D), so each portfolio owes D alone. The run knows
    that plan from the chunk's listing and writes without asking claim_owed_dates.sql.
    Around it: a chunk with a chain further behind is planned and caught up in date order;
    a wrong equity_as_of (set by hand, which no trigger catches) is refused by
    insert_complete.sql (here as a gap: the date it names has no snapshot) and re-planned,
    never written from the wrong date; a slot another run holds is held. The rows are the
    reference's."""
    book = random_book(db.conn, 40, CALENDAR, seed=52)
    ids = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    plans: list[tuple[list[int], bool]] = []
    real = batch.claim_owed

    async def counted(conn, run_id, last, pids, *args, **kwargs):  # type: ignore[no-untyped-def]
        plans.append((list(pids), kwargs.get("claim", True)))
        return await real(conn, run_id, last, pids, *args, **kwargs)

    monkeypatch.setattr(batch, "claim_owed", counted)

    def run_here(*args: str, code: int = 0) -> dict:
        res = run_in_process(capsys, monkeypatch, (*args, "--json"), {"DATABASE_URL": db.dsn})
        assert res.code == code, res.err
        return json.loads(res.out)

    # A first run (every portfolio never run), then the next date (every chain one date behind).
    for day in CALENDAR[:2]:
        out = run_here("batch", "run", "--date", day.isoformat(), "--chunk-size", "10")
        assert (out["processed"], out["already_done"], out["failed"], out["status"]) == (40, 0, 0, "succeeded")
        assert out["dates"][0]["before_chain"] == 0
        assert_as_of_is_chain_end(db, day)
    assert plans == []                                        # four chunks a run, none planned
    # New portfolios join the last chunk: never run, they start on the run's date.
    joined = [add_portfolio(db.conn, f"new-{i}", 1000 + i) for i in range(3)]
    out = run_here("batch", "run", "--date", CALENDAR[2].isoformat(), "--chunk-size", "10")
    assert (out["processed"], out["already_done"], out["failed"]) == (43, 0, 0)
    assert plans == []
    assert db.all("SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots"
                  " WHERE portfolio_id = ANY(%s) ORDER BY 1", joined) == [
        (p, CALENDAR[2], 1000 + i) for i, p in enumerate(joined)]

    # Around it, for CALENDAR[3]: one chain further behind (chunk 1), a wrong equity_as_of
    # (chunk 2), a slot another run holds (chunk 3); chunk 4 is the everyday case.
    behind, wrong, taken = ids[5], ids[15], ids[25]
    run(db, "batch", "undo", "--from", CALENDAR[2].isoformat(), "--portfolio", str(behind), "--yes")
    db.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s", wrong, CALENDAR[2])
    db.execute("UPDATE portfolios SET equity_as_of = %s,"
               " equity_balance = (SELECT net_asset_value FROM portfolio_snapshots"
               "                    WHERE portfolio_id = %s AND snapshot_date = %s)"
               " WHERE id = %s", CALENDAR[2], wrong, CALENDAR[1], wrong)   # a hand fix gone wrong
    assert db.scalar("SELECT equity_as_of FROM portfolios WHERE id = %s", wrong) == CALENDAR[2]
    hold_slot(db, taken, CALENDAR[3])
    plans.clear()
    out = run_here("batch", "run", "--date", CALENDAR[3].isoformat(), "--chunk-size", "10", code=75)
    assert out["status"] == "held", out
    by_date = {d["date"]: d for d in out["dates"]}
    assert (by_date[CALENDAR[2].isoformat()]["processed"], by_date[CALENDAR[3].isoformat()]["processed"],
            by_date[CALENDAR[3].isoformat()]["held"], out["failed"]) == (2, 42, 1, 0), out
    # planned: chunk 1 (behind) as a chunk; wrong's refused write and taken's slot the two-step
    # way (taken again when the run looks at what it found held, at the end)
    assert [p for p, claim in plans if not claim] == [ids[:10]]
    assert {p for pids, claim in plans if claim for p in pids} == {wrong, taken}
    navs = {(pid, day): nav for pid, day, nav in db.all(
        "SELECT portfolio_id, snapshot_date, net_asset_value FROM portfolio_snapshots"
        " WHERE is_complete AND portfolio_id <> ALL(%s)", joined)}
    assert len(navs) == 40 * 4 - 1
    for pid, balance in book.balances.items():
        days = CALENDAR[:3] if pid == taken else CALENDAR[:4]
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], days)
        assert [navs[(pid, s.day)] for s in chain] == [s.nav for s in chain], pid


def test_what_a_chunk_listing_plans_is_exactly_what_it_knows() -> None:
    """ChunkListing.plan answers only where claim_owed_dates.sql's plan follows from the
    listing alone, and says None (plan it) in every case around those."""
    d, p, r = CALENDAR[3], CALENDAR[2], CALENDAR[3]
    ids = [1, 2, 3, 4]

    def plan(ends_on: int = 0, before: date | None = p, ends_before: int = 0, fresh: tuple[int, ...] = (),
             start: date = d, report_from: date | None = r) -> batch.ChunkPlan | None:
        return batch.ChunkListing(ids, ends_on, before, ends_before, frozenset(fresh)).plan(d, start, report_from)

    rerun = plan(ends_on=4)
    assert rerun is not None and (rerun.owed, rerun.starts) == ({}, {d: 4})
    daily = plan(ends_before=2, fresh=(3, 4))
    assert daily is not None
    assert daily.owed == {i: [d] for i in ids} and daily.starts == {p: 2, d: 2}
    assert daily.follows == {(1, d): p, (2, d): p, (3, d): None, (4, d): None}
    assert daily.got == set() and daily.busy == frozenset()
    first = plan(before=None, fresh=(1, 2, 3, 4))
    assert first is not None and first.starts == {d: 4} and set(first.follows.values()) == {None}
    assert plan(ends_on=3) is None                                    # one chain behind
    assert plan(ends_before=3) is None                                # one further behind, or ahead
    assert plan(ends_on=2, ends_before=2) is None                     # a mix of re-run and new date
    assert plan(ends_before=2, fresh=(3, 4), start=CALENDAR[0]) is None   # a backfill: new ones owe more
    assert plan(fresh=(1, 2, 3, 4), start=CALENDAR[0]) is None
    assert plan(ends_before=4, report_from=CALENDAR[1]) is None       # ends after what the run reports
    assert plan(ends_on=4, report_from=CALENDAR[2]) is None
    assert plan(ends_before=4, report_from=None) is None
    assert plan(ends_before=4, before=None) is None
    assert batch.ChunkListing([]).plan(d, d, r) is None


def test_a_listing_plans_exactly_what_claim_owed_dates_plans(db: Db) -> None:
    """Where ChunkListing.plan answers, its owed dates, follows and chain starts are the ones
    claim_owed_dates.sql (plan only) returns for the same chunk on the same database; busy
    is the one difference (the listing does not look for existing slots: insert_complete.sql
    finds them)."""
    random_book(db.conn, 12, CALENDAR, seed=53)
    ids = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    run(db, "batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[1].isoformat(),
        *[a for p in ids[:8] for a in ("--portfolio", str(p))])          # 4 never run
    holder = hold_slot(db, ids[3], CALENDAR[2])

    async def both(day: date) -> tuple[batch.ChunkPlan | None, batch.ChunkPlan]:
        async with connect_pool(DbSettings(db.dsn)) as pool, pool.acquire() as conn:
            async with planned_transaction(conn):
                row = await conn.fetchrow(sql("batch/list_portfolio_chunk"), 0, None, 100, None, day)
            listing = batch.ChunkListing.of(row)
            planned = await batch.claim_owed(conn, 0, day, ids, timedelta(minutes=15), [day] * len(ids),
                                             claim=False, report_from=day)
        return listing.plan(day, day, day), planned

    def same(known: batch.ChunkPlan | None, planned: batch.ChunkPlan) -> None:
        assert known is not None
        assert (known.owed, known.follows, known.starts) == (planned.owed, planned.follows, planned.starts)
        assert known.got == planned.got == set() and known.reclaimed == planned.reclaimed == 0

    known, planned = asyncio.run(both(CALENDAR[2]))      # the daily run and a first run, one chunk
    same(known, planned)
    assert planned.starts == {CALENDAR[1]: 8, CALENDAR[2]: 4} and planned.busy == {ids[3]} and known.busy == set()
    db.execute("DELETE FROM portfolio_snapshots WHERE batch_run_id = %s", holder)
    run(db, "batch", "run", "--date", CALENDAR[2].isoformat())
    known, planned = asyncio.run(both(CALENDAR[2]))      # the re-run
    same(known, planned)
    assert planned.owed == {} and planned.starts == {CALENDAR[2]: 12}
    known, planned = asyncio.run(both(CALENDAR[3]))      # the next day
    same(known, planned)
    assert set(planned.follows.values()) == {CALENDAR[2]}
