"""`pnl batch undo`: remove, archive, equity back; re-run reproduces; restore restores."""

from __future__ import annotations

import json
from datetime import date, timedelta

from tests.conftest import Db, run_cli
from tests.data import random_book
from tests.reference import replay

CALENDAR = [date(2026, 6, 1) + timedelta(days=i) for i in range(6)]
VALUES = ("portfolio_id, snapshot_date, opening_equity, daily_pnl, capital_flow, net_asset_value, daily_return,"
          " cumulative_pnl, long_value, short_value, gross_exposure, net_exposure, num_positions, is_complete")


def values(db: Db) -> list[tuple]:
    return db.all(f"SELECT {VALUES} FROM portfolio_snapshots ORDER BY portfolio_id, snapshot_date")


def whole(db: Db) -> tuple[list[tuple], list[tuple]]:
    return db.all("SELECT * FROM portfolio_snapshots ORDER BY id"), db.all("SELECT * FROM portfolios ORDER BY id")


def backfilled(db: Db, n: int = 12):  # type: ignore[no-untyped-def]
    book = random_book(db.conn, n, CALENDAR, seed=31)
    res = run_cli("batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[-1].isoformat(),
                  dsn=db.dsn)
    assert res.code == 0, res.err
    return book


def undo(db: Db, *args: str):  # type: ignore[no-untyped-def]
    return run_cli("batch", "undo", *args, dsn=db.dsn)


def test_undo_then_rerun_reproduces_the_same_numbers(db: Db) -> None:
    book = backfilled(db)
    before_values = values(db)
    equity_before = db.all("SELECT id, equity_balance FROM portfolios ORDER BY id")
    cut = CALENDAR[3]
    res = undo(db, "--from", cut.isoformat(), "--yes", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["removed"] == 12 * 3 and [d["date"] for d in out["dates"]] == [d.isoformat() for d in CALENDAR[3:]]
    assert db.scalar("SELECT max(snapshot_date) FROM portfolio_snapshots") == CALENDAR[2]
    assert db.scalar("SELECT count(*) FROM snapshot_undo_audit WHERE rescue_run_id = %s", out["run_id"]) == 36
    assert db.scalar("SELECT kind || '/' || status FROM rescue_runs WHERE id = %s", out["run_id"]) == "undo/done"
    # Equity is back to what it was before the cut: the NAV of the last snapshot left.
    for pid, balance in book.balances.items():
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], CALENDAR[:3])
        assert db.scalar("SELECT equity_balance FROM portfolios WHERE id = %s", pid) == chain[-1].nav
    # The next run catches up the removed dates and computes exactly the same numbers.
    res = run_cli("batch", "run", "--date", CALENDAR[-1].isoformat(), dsn=db.dsn)
    assert res.code == 0, res.err
    assert values(db) == before_values
    assert db.all("SELECT id, equity_balance FROM portfolios ORDER BY id") == equity_before


def test_undo_everything_sets_equity_to_the_first_opening(db: Db) -> None:
    book = backfilled(db, 4)
    assert undo(db, "--from", CALENDAR[0].isoformat(), "--yes").code == 0
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0
    assert dict(db.all("SELECT id, equity_balance FROM portfolios")) == book.balances


def test_restore_puts_rows_and_equity_back_exactly_and_refuses_once_refilled(db: Db) -> None:
    backfilled(db)
    before = whole(db)
    out = json.loads(undo(db, "--from", CALENDAR[2].isoformat(), "--yes", "--json").out)
    res = run_cli("batch", "undo", "--restore", str(out["run_id"]), "--json", dsn=db.dsn)
    assert res.code == 1 and "--yes" in res.err                      # no terminal: refuse
    res = run_cli("batch", "undo", "--restore", str(out["run_id"]), "--yes", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["restored"] == 12 * 4
    assert whole(db) == before
    assert db.scalar("SELECT status FROM rescue_runs WHERE id = %s", out["run_id"]) == "restored"
    again = run_cli("batch", "undo", "--restore", str(out["run_id"]), "--yes", dsn=db.dsn)
    assert again.code == 1 and "already restored" in again.err

    # Undo, run one of the dates again, then restore: refused, nothing changed.
    out = json.loads(undo(db, "--from", CALENDAR[4].isoformat(), "--yes", "--json").out)
    assert run_cli("batch", "run", "--date", CALENDAR[4].isoformat(), dsn=db.dsn).code == 0
    after_rerun = whole(db)
    res = run_cli("batch", "undo", "--restore", str(out["run_id"]), "--yes", dsn=db.dsn)
    assert res.code == 1 and "filled again" in res.err and f"--from {CALENDAR[4]}" in res.err
    assert whole(db) == after_rerun
    res = run_cli("batch", "undo", "--restore", "999", "--yes", dsn=db.dsn)
    assert res.code == 2 and "no undo run #999" in res.err


def test_undo_refuses_under_live_claims_and_dry_run_changes_nothing(db: Db) -> None:
    backfilled(db, 5)
    pids = [p for (p,) in db.all("SELECT id FROM portfolios ORDER BY id")]
    # Another run is computing a later date for one of them.
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id, claimed_at,"
               " lease_expires_at) VALUES (%s, '2026-06-10', false, 4242, now(), now() + interval '10 minutes')",
               pids[0])
    before = whole(db)
    res = undo(db, "--from", CALENDAR[3].isoformat(), "--yes")
    assert res.code == 1 and "run #4242" in res.err and len(res.err.strip().splitlines()) == 1
    assert whole(db) == before
    # The other portfolios are not under that claim: undo may touch them.
    dry = undo(db, "--from", CALENDAR[3].isoformat(), "--portfolio", str(pids[1]), "--dry-run", "--json")
    assert dry.code == 0, dry.err
    plan = json.loads(dry.out)
    assert plan["dry_run"] and plan["removed"] == 3 and len(plan["dates"]) == 3
    assert [e["portfolio_id"] for e in plan["equity"]] == [pids[1]]
    text = undo(db, "--from", CALENDAR[3].isoformat(), "--portfolio", str(pids[1]), "--dry-run")
    assert "dry run, nothing changed: 3 snapshot(s)" in text.out and f"portfolio {pids[1]} equity:" in text.out
    assert whole(db) == before
    assert db.scalar("SELECT count(*) FROM rescue_runs") == 0
    assert undo(db, "--from", CALENDAR[3].isoformat()).code == 1          # no terminal, no --yes
    # Once the claim's lease has expired, its run is dead: undo goes ahead.
    db.execute("UPDATE portfolio_snapshots SET lease_expires_at = now() - interval '1 second' WHERE NOT is_complete")
    assert undo(db, "--from", CALENDAR[3].isoformat(), "--yes").code == 0
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE is_complete AND snapshot_date >= %s",
                     CALENDAR[3]) == 0


def test_undo_then_backfill_rebuilds_history_from_an_earlier_date(db: Db) -> None:
    book = random_book(db.conn, 6, CALENDAR, seed=41)
    # The chains were started late (on the third day): the first two are before their chain.
    assert run_cli("batch", "run", "--date", CALENDAR[2].isoformat(), dsn=db.dsn).code == 0
    assert run_cli("batch", "run", "--date", CALENDAR[-1].isoformat(), dsn=db.dsn).code == 0
    res = run_cli("batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", CALENDAR[-1].isoformat(),
                  "--json", dsn=db.dsn)
    assert res.code == 0 and json.loads(res.out)["run"]["before_chain"] == 12
    assert undo(db, "--from", CALENDAR[2].isoformat(), "--yes").code == 0
    res = run_cli("batch", "backfill", "--from", CALENDAR[0].isoformat(), "--to", "latest", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    assert json.loads(res.out)["run"]["processed"] == 6 * len(CALENDAR)
    for pid, balance in book.balances.items():
        chain = replay(balance, book.positions[pid], book.prices, book.flows[pid], CALENDAR)
        navs = db.all("SELECT snapshot_date, net_asset_value FROM portfolio_snapshots WHERE portfolio_id = %s"
                      " ORDER BY 1", pid)
        assert navs == [(s.day, s.nav) for s in chain], pid


def killed_undo(db: Db) -> int:
    """An undo from CALENDAR[2] (one portfolio a chunk) killed with SIGKILL after its
    first chunk committed; returns its rescue run id."""
    import os
    import signal
    import subprocess
    import sys

    import psycopg

    from tests.procs import ROOT, wait_for
    ids = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    blocker = psycopg.connect(db.dsn)
    try:
        # The undo's second chunk (one portfolio a chunk) waits for this row lock: the first is committed.
        blocker.execute("SELECT id FROM portfolios WHERE id = %s FOR NO KEY UPDATE", (ids[1],))
        proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "batch", "undo", "--from",
                                 CALENDAR[2].isoformat(), "--chunk-size", "1", "--yes"],
                                env={**os.environ, "DATABASE_URL": db.dsn}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: db.scalar("SELECT count(*) FROM snapshot_undo_audit") == 4, what="the first chunk")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        blocker.close()
    run_id = db.scalar("SELECT max(id) FROM rescue_runs WHERE kind = 'undo'")
    assert db.scalar("SELECT status FROM rescue_runs WHERE id = %s", run_id) == "running"
    return int(run_id)


def test_an_undo_killed_part_way_is_shown_by_status_and_restore_puts_it_back(db: Db) -> None:
    """kill -9 in the middle of an undo (one transaction per chunk): `pnl status` must not look healthy
    and quiet; it names the unfinished undo run and how to finish it or put it back."""
    backfilled(db)
    before = whole(db)
    run_id = killed_undo(db)
    res = run_cli("status", "--no-verify", dsn=db.dsn)
    assert res.code == 0, res.err
    assert f"UNFINISHED undo run #{run_id} (running" in res.out and f"pnl batch undo --restore {run_id}" in res.out
    res = run_cli("status", "--no-verify", "--json", dsn=db.dsn)
    assert [r["id"] for r in json.loads(res.out)["unfinished_rescue_runs"]] == [run_id]
    assert undo(db, "--restore", str(run_id), "--yes").code == 0
    assert whole(db) == before
    res = run_cli("status", "--no-verify", "--json", dsn=db.dsn)
    assert json.loads(res.out)["unfinished_rescue_runs"] == []


def test_running_a_killed_undo_again_finishes_it_and_status_says_so(db: Db) -> None:
    """status's advice for a killed undo is "run the same command again": that run
    finished the work but the killed run stayed UNFINISHED forever. The new run marks
    it done (finished_by); restoring both puts the book back as it was."""
    backfilled(db)
    before = whole(db)
    killed = killed_undo(db)
    pid = db.scalar("SELECT max(id) FROM portfolios")
    # less than it was asked for does not complete it: a later date, or some portfolios
    for narrower in (("--from", CALENDAR[3].isoformat()), ("--from", CALENDAR[2].isoformat(), "--portfolio", str(pid))):
        res = undo(db, *narrower, "--yes", "--json")
        assert res.code == 0, res.err
        assert json.loads(res.out)["interrupted_undos_completed"] == [], res.out
        assert db.scalar("SELECT status FROM rescue_runs WHERE id = %s", killed) == "running"
    res = undo(db, "--from", CALENDAR[2].isoformat(), "--yes", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["interrupted_undos_completed"] == [killed]
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE snapshot_date >= %s", CALENDAR[2]) == 0
    assert db.one("SELECT status, summary->>'finished_by' FROM rescue_runs WHERE id = %s", killed) == \
        ("done", str(out["run_id"]))
    st = run_cli("status", "--no-verify", "--json", dsn=db.dsn)
    assert json.loads(st.out)["unfinished_rescue_runs"] == []
    assert "UNFINISHED" not in run_cli("status", "--no-verify", dsn=db.dsn).out
    # each run is put back on its own, newest first
    for run_id in sorted(db.all("SELECT id FROM rescue_runs WHERE kind = 'undo'"), reverse=True):
        assert undo(db, "--restore", str(run_id[0]), "--yes").code in (0, 1)
    assert whole(db) == before


def test_nothing_to_do_without_dry_run_is_not_reported_as_a_dry_run(db: Db) -> None:
    """--yes with nothing to undo or repair changed nothing; the report says so, and
    calls it a dry run only when --dry-run was given."""
    backfilled(db, 3)
    later = (CALENDAR[-1] + timedelta(days=30)).isoformat()
    for extra, dry in ((("--yes",), False), (("--dry-run",), True)):
        res = run_cli("batch", "undo", "--from", later, *extra, "--json", dsn=db.dsn)
        assert res.code == 0, res.err
        out = json.loads(res.out)
        assert (out["removed"], out["dry_run"]) == (0, dry), out
    pid = db.scalar("SELECT min(id) FROM portfolios")
    res = run_cli("repair", "--portfolio", str(pid), "--from", later, "--yes", dsn=db.dsn)
    assert "dry run" not in res.out + res.err, (res.out, res.err)
    res = run_cli("repair", "--portfolio", str(pid), "--from", later, "--yes", "--json", dsn=db.dsn)
    assert json.loads(res.out)["dry_run"] is False, res.out
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 3 * len(CALENDAR)


def test_undo_does_not_wait_out_the_lease_of_a_run_killed_on_this_host(db: Db) -> None:
    """kill -9 of a batch run left its claims (lease 1h) and its 'running' row,
    and undo refused until the lease ended (`pnl cleanup` removed the claims but
    not the row). A run whose process is gone on this host (the host batch_runs
    recorded) is now marked abandoned and its claims released; a live one, or
    one recorded on another host, still blocks."""
    import socket

    from tests.procs import finish, held_at_finalize, hold_finalize, open_finalize, start_batch, wait_for
    from tests.test_crash_safety import incomplete

    first, day = CALENDAR[0], CALENDAR[1]
    random_book(db.conn, 60, [first, day], seed=33)
    assert run_cli("batch", "run", "--date", first.isoformat(), dsn=db.dsn).code == 0
    hold_finalize(db.dsn, times=1)
    victim = start_batch(db.dsn, "--date", day.isoformat(), "--chunk-size", "20", "--lease", "1h", "--workers", "1")
    wait_for(lambda: held_at_finalize(db.dsn) == 1, what="the first chunk to be claimed and in flight")
    run_id = db.scalar("SELECT max(id) FROM batch_runs")
    # alive: refused, nothing changed
    res = undo(db, "--from", first.isoformat(), "--yes")
    assert res.code == 1 and f"run #{run_id}" in res.err, res.err
    victim.kill()
    victim.wait()
    wait_for(lambda: held_at_finalize(db.dsn) == 0, what="the server to end the dead client's statement")
    assert (incomplete(db), db.scalar("SELECT status FROM batch_runs WHERE id = %s", run_id)) == (20, "running")
    # status does not pass a dead run's counts off as final
    line = [x for x in run_cli("status", "--no-verify", dsn=db.dsn).out.splitlines() if f"#{run_id} " in x]
    assert len(line) == 1 and "running" in line[0] and "(counts as of its last heartbeat)" in line[0], line
    # dead, but recorded on another host: this host cannot tell, still refused
    db.execute("UPDATE batch_runs SET host = 'another-host' WHERE id = %s", run_id)
    res = undo(db, "--from", first.isoformat(), "--yes")
    assert res.code == 1 and f"run #{run_id}" in res.err and "on host another-host" in res.err, res.err
    db.execute("UPDATE batch_runs SET host = %s WHERE id = %s", socket.gethostname(), run_id)
    # this host's name, no such process here, but a session of that process on the server: a
    # machine or container sharing the host name; still refused
    import psycopg
    pid = db.scalar("SELECT pid FROM batch_runs WHERE id = %s", run_id)
    with psycopg.connect(db.dsn, application_name=f"pnl/{pid}"):
        res = undo(db, "--from", first.isoformat(), "--yes")
        assert res.code == 1 and f"run #{run_id}" in res.err, res.err
    # the dry run names it and changes nothing
    dry = undo(db, "--from", first.isoformat(), "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert (json.loads(dry.out)["dead_runs"], json.loads(dry.out)["removed"]) == ([run_id], 60)
    assert incomplete(db) == 20
    # the real undo abandons it, releases its claims, and removes the complete snapshots
    res = undo(db, "--from", first.isoformat(), "--yes", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert (out["dead_runs"], out["removed"]) == ([run_id], 60)
    assert db.scalar("SELECT status FROM batch_runs WHERE id = %s", run_id) == "abandoned"
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0
    open_finalize(db.dsn)
    # and the dates run again from scratch, exactly once
    code, again, err = finish(start_batch(db.dsn, "--date", day.isoformat()))
    assert code == 0 and again is not None and again["processed"] == 60, err


def test_the_advice_of_a_refused_restore_leads_out_not_in_a_circle(db: Db) -> None:
    """Undo, run the dates again, restore: refused (the slots were filled again),
    advising an undo of those dates. That undo is newer than the first, and restore
    then asked for it to be restored first, which fills the slots again: a circle.
    A newer undo that removed only dates in the older one's range (or after) no
    longer blocks: the advice works, and the book is exactly what the first undo
    removed. One that removed earlier dates still blocks (test_equity_as_of)."""
    backfilled(db)
    before = whole(db)
    first = json.loads(undo(db, "--from", CALENDAR[2].isoformat(), "--yes", "--json").out)
    assert run_cli("batch", "run", "--date", CALENDAR[-1].isoformat(), dsn=db.dsn).code == 0
    res = undo(db, "--restore", str(first["run_id"]), "--yes")
    assert res.code == 1 and f"--from {CALENDAR[2]}" in res.err, res.err
    second = json.loads(undo(db, "--from", CALENDAR[2].isoformat(), "--yes", "--json").out)
    res = undo(db, "--restore", str(first["run_id"]), "--yes")
    assert res.code == 0, res.err
    assert whole(db) == before
    # the second undo's rows (the re-run's) cannot come back over them
    res = undo(db, "--restore", str(second["run_id"]), "--yes")
    assert res.code == 1 and "filled again" in res.err
    assert whole(db) == before
