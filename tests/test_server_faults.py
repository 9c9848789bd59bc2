"""Server faults: the database restarts (fast, immediate) or goes away during
real `pnl batch run` processes. These tests restart a server of their own (a
throwaway LocalServer for this module), never the session's shared one.

What must hold: only the chunks in flight fail; the run reconnects and goes on
(or, if the server stays away, ends with exit 1, one JSON object with its
counts and an error, its outcome recorded once the server answers); never a
traceback; no 'running' row left behind when the server came back in time;
a re-run completes every portfolio exactly once (NAVs equal the replay)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import date
from itertools import count

import psycopg
import pytest

from pnl import migrate
from pnl.embedded import server_bindir
from pnl.localpg import LocalServer, free_port, throwaway_dir
from tests.conftest import Db
from tests.data import Book, random_book
from tests.procs import (
    expire_leases,
    finish,
    held_at_finalize,
    hold_finalize,
    open_finalize,
    start_batch,
    wait_for,
)
from tests.test_crash_safety import assert_exactly_once, incomplete

DAY = date(2026, 6, 1)
# synchronous_commit stays on: an immediate shutdown must not lose acknowledged commits (as in production).
SETTINGS = {"fsync": "off", "full_page_writes": "off",
            "client_connection_check_interval": "100ms"}
_names = count(1)


@pytest.fixture(scope="module")
def own_server() -> Iterator[LocalServer]:
    server = LocalServer(data_dir=throwaway_dir("pnl-pg-faults-"), port=free_port(), password="pnl-fault-secret",
                         bindir=server_bindir(os.environ.get("PNL_PG_SOURCE", "auto"))[0])
    server.init()
    server.start(SETTINGS)
    try:
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture
def fdb(own_server: LocalServer) -> Iterator[Db]:
    """A fresh, migrated database on the module's own server."""
    if not own_server.running():
        own_server.start(SETTINGS)         # a test that failed with the server stopped
    name = f"faults_{next(_names)}"
    with psycopg.connect(own_server.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = own_server.dsn_for(name)
    migrate.apply(dsn)
    db = Db(dsn=dsn, conn=psycopg.connect(dsn, autocommit=True))
    yield db
    db.conn.close()


def reconnect(db: Db) -> None:
    """The test's own connection after the server came back."""
    db.conn.close()
    db.conn = psycopg.connect(db.dsn, autocommit=True)


class Stderr:
    """A process's stderr read as it comes, so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        assert proc.stderr is not None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self, timeout: float = 120) -> tuple[int, dict, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=timeout)
        self.thread.join(timeout=10)
        err = "".join(self.lines)
        assert "Traceback" not in err, err
        return code, json.loads(out), err           # stdout is one JSON object, always


@pytest.mark.parametrize(("mode", "workers"), [("fast", 1), ("immediate", 1), ("fast", 3), ("immediate", 3)],
                         ids=["fast-1-worker", "immediate-1-worker", "fast-3-workers", "immediate-3-workers"])
def test_a_restart_mid_run_fails_only_the_chunks_in_flight_and_the_run_goes_on(
        own_server: LocalServer, fdb: Db, mode: str, workers: int) -> None:
    book = random_book(fdb.conn, 90, [DAY])
    hold_finalize(fdb.dsn, times=workers)
    proc = start_batch(fdb.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", str(workers))
    wait_for(lambda: held_at_finalize(fdb.dsn) == workers, what=f"{workers} chunk(s) in flight")
    run_id = fdb.scalar("SELECT max(id) FROM batch_runs")
    own_server.restart(mode, SETTINGS)
    # Open the gate: after an immediate shutdown its entry counter (a sequence, not WAL-flushed by
    # the aborted finalize) may start over, and would hold the next chunks.
    open_finalize(fdb.dsn)
    reconnect(fdb)
    code, out, err = finish(proc)
    assert "Traceback" not in err, err
    assert code == 1, err
    assert out is not None and out["run_id"] == run_id
    # Only the chunks in flight failed (their claims given back once the server was back); every
    # other chunk was processed after the reconnect.
    assert (out["failed"], out["processed"], out["not_reached"]) == (10 * workers, 90 - 10 * workers, 0), out
    assert (out["status"], out["error"]) == ("partial", None)
    assert "lost the database" in err and "reconnected" in err
    assert fdb.scalar("SELECT status FROM batch_runs WHERE id = %s", run_id) == "partial"
    assert incomplete(fdb) == 0
    failed = {f["portfolio_id"] for f in out["failures"]}
    assert len(failed) == 10 * workers and all("claims released" in f["reason"] for f in out["failures"])

    code, again, err = finish(start_batch(fdb.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert again is not None and (again["processed"], again["already_done"]) == (10 * workers, 90 - 10 * workers)
    assert fdb.scalar("SELECT count(*) FROM batch_runs WHERE status = 'running'") == 0
    assert_exactly_once(fdb, book)


def start_held_run(fdb: Db, portfolios: int, *args: str) -> tuple[Book, Stderr, int]:
    """A run over a new book (chunks of 20, one worker) held inside its first
    chunk's finalize; the test's own connection closed (the server is about to go)."""
    book = random_book(fdb.conn, portfolios, [DAY])
    hold_finalize(fdb.dsn, times=1)
    stderr = Stderr(start_batch(fdb.dsn, "--date", DAY.isoformat(), "--chunk-size", "20", "--workers", "1", *args))
    wait_for(lambda: held_at_finalize(fdb.dsn) == 1, what="the first chunk in flight")
    run_id = int(fdb.scalar("SELECT max(id) FROM batch_runs"))  # type: ignore[arg-type]
    fdb.conn.close()
    return book, stderr, run_id


def test_a_server_that_stays_away_ends_the_run_and_its_outcome_is_recorded_when_it_answers(
        own_server: LocalServer, fdb: Db) -> None:
    book, stderr, run_id = start_held_run(fdb, 60, "--reconnect-for", "5s")
    own_server.stop("fast")
    try:
        # The run tries for 5 s, gives up on its work, then waits for the server to record its end.
        wait_for(lambda: stderr.has("stops:"), timeout=60, what="the run to give up")
    finally:
        own_server.start(SETTINGS)
        open_finalize(fdb.dsn)
    code, out, err = stderr.finish()
    assert code == 1, err
    assert (out["processed"], out["failed"], out["not_reached"], out["status"]) == (0, 20, 40, "failed"), out
    assert "could not reconnect within 5s" in out["error"]
    assert "could not record" not in out["error"]
    reconnect(fdb)
    assert fdb.scalar("SELECT status FROM batch_runs WHERE id = %s", run_id) == "failed"
    assert fdb.scalar("SELECT failed FROM batch_runs WHERE id = %s", run_id) == 20
    assert incomplete(fdb) == 0           # released when it recorded its end

    code, again, err = finish(start_batch(fdb.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert again is not None and again["processed"] == 60
    assert fdb.scalar("SELECT count(*) FROM batch_runs WHERE status = 'running'") == 0
    assert_exactly_once(fdb, book)


def test_a_server_gone_for_good_ends_the_run_in_one_json_object_and_the_lease_recovers(
        own_server: LocalServer, fdb: Db) -> None:
    """Nothing can be recorded: the run says so (exit 1, counts, error); its
    claims stay until their lease expires, then a re-run takes them over."""
    book, stderr, run_id = start_held_run(fdb, 40, "--reconnect-for", "1s", "--lease", "1h")
    own_server.stop("immediate")
    try:
        code, out, err = stderr.finish()
    finally:
        own_server.start(SETTINGS)
        open_finalize(fdb.dsn)            # see the restart test
    assert code == 1, err
    assert (out["run_id"], out["processed"], out["failed"], out["not_reached"]) == (run_id, 0, 20, 20), out
    assert "could not reconnect within 1s" in out["error"] and "could not record the run's end" in out["error"]
    assert "expire with their lease" in out["failures"][0]["reason"]
    reconnect(fdb)
    assert fdb.scalar("SELECT status FROM batch_runs WHERE id = %s", run_id) == "running"
    assert incomplete(fdb) == 20

    assert expire_leases(fdb.dsn) == 20
    code, again, err = finish(start_batch(fdb.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert again is not None and (again["processed"], again["reclaimed"]) == (40, 20)
    assert_exactly_once(fdb, book)


def test_a_sigterm_while_reconnecting_stops_the_run_at_once(own_server: LocalServer, fdb: Db) -> None:
    """A supervisor stops the service while the server is away: the run stops
    waiting for it (the chunk in flight has already failed) instead of
    reconnecting for the rest of --reconnect-for and one more window to record
    its end (longer than any stop timeout: systemd would SIGKILL it). Exit 143,
    one JSON object, status interrupted; its claims recover by lease."""
    book, stderr, run_id = start_held_run(fdb, 40, "--reconnect-for", "10m", "--lease", "1h")
    own_server.stop("fast")
    try:
        wait_for(lambda: stderr.has("reconnecting for up to"), timeout=60, what="the run to lose the server")
        stderr.proc.send_signal(signal.SIGTERM)
        stderr.proc.wait(timeout=120)     # a run that keeps reconnecting would take 10 minutes, then 10 more
    finally:
        if stderr.proc.poll() is None:
            stderr.proc.kill()
        own_server.start(SETTINGS)
        open_finalize(fdb.dsn)
    code, out, err = stderr.finish()
    assert code == 143, err
    assert (out["run_id"], out["status"], out["processed"], out["failed"]) == (run_id, "interrupted", 0, 20), out
    assert "stopped (signal) while reconnecting" in out["error"], out
    reconnect(fdb)
    # Nothing could be recorded while the server was away: the row stays 'running' (a later run marks it
    # abandoned once its lease has passed) and the claims of the failed chunk wait for their lease.
    assert fdb.scalar("SELECT status FROM batch_runs WHERE id = %s", run_id) == "running"
    assert incomplete(fdb) == 20
    assert expire_leases(fdb.dsn) == 20
    code, again, err = finish(start_batch(fdb.dsn, "--date", DAY.isoformat()))
    assert code == 0, err
    assert again is not None and again["processed"] + again["already_done"] == 40
    assert_exactly_once(fdb, book)


def test_a_terminated_heartbeat_and_released_connections_never_crash_the_run(own_server: LocalServer,
                                                                             fdb: Db) -> None:
    """Every pnl backend is terminated (57P01, what a failover's proxy does)
    while a chunk is in flight and the lease heartbeat is beating (lease 3 s):
    the chunk fails, the heartbeat tries again, the run goes on."""
    book = random_book(fdb.conn, 30, [DAY])
    hold_finalize(fdb.dsn, times=1, timeout=4)
    proc = start_batch(fdb.dsn, "--date", DAY.isoformat(), "--chunk-size", "10", "--workers", "1",
                       "--lease", "3s")
    wait_for(lambda: held_at_finalize(fdb.dsn) == 1, what="the first chunk in flight")
    wait_for(lambda: fdb.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pnl/%'") >= 2,
             timeout=10, what="the heartbeat's own connection")
    fdb.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'pnl/%'")
    code, out, err = finish(proc)
    assert "Traceback" not in err, err
    assert code == 1 and out is not None, err
    assert (out["processed"], out["failed"], out["error"]) == (20, 10, None), out
    assert incomplete(fdb) == 0
    code, again, err = finish(start_batch(fdb.dsn, "--date", DAY.isoformat()))
    assert code == 0 and again is not None and again["processed"] == 10, err
    assert_exactly_once(fdb, book)


def test_a_restart_while_waiting_for_held_slots_and_the_revisit_goes_on(own_server: LocalServer, fdb: Db) -> None:
    """Run A is held inside its first chunk; run B (--wait) does the rest and
    waits for A's slots. The server restarts: A's chunk in flight fails (its
    claims given back once it reconnects); B reconnects inside its wait and
    revisit, takes the slots A gave back, and finishes everything: exit 0."""
    book = random_book(fdb.conn, 40, [DAY])
    hold_finalize(fdb.dsn, times=1)
    first = start_batch(fdb.dsn, "--date", DAY.isoformat(), "--chunk-size", "20", "--workers", "1")
    wait_for(lambda: held_at_finalize(fdb.dsn) == 1, what="run A inside its first chunk")
    second = start_batch(fdb.dsn, "--date", DAY.isoformat(), "--chunk-size", "20", "--workers", "1", "--wait")
    wait_for(lambda: fdb.scalar("SELECT count(*) FROM batch_runs WHERE processed = 20 AND held = 20") == 1,
             what="run B done with its chunk and waiting for A's")
    own_server.restart("fast", SETTINGS)
    open_finalize(fdb.dsn)
    reconnect(fdb)
    code_a, out_a, err_a = finish(first)
    code_b, out_b, err_b = finish(second)
    assert "Traceback" not in err_a + err_b, err_a + err_b
    assert code_a == 1 and out_a is not None, err_a
    assert (out_a["processed"], out_a["failed"], out_a["already_done"], out_a["error"]) == (0, 20, 20, None), out_a
    assert code_b == 0 and out_b is not None, err_b
    assert (out_b["processed"], out_b["held"], out_b["failed"], out_b["error"]) == (40, 0, 0, None), out_b
    assert dict(fdb.all("SELECT id, status FROM batch_runs")) == {out_a["run_id"]: "failed",
                                                                   out_b["run_id"]: "succeeded"}
    assert incomplete(fdb) == 0
    assert_exactly_once(fdb, book)
