"""The CLI as a user meets it: help everywhere, one-line errors, nothing changed."""

from __future__ import annotations

import json

import click
import pytest

from cli import cli
from pnl.localpg import free_port
from tests.conftest import Db, run_cli


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += all_commands(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


@pytest.mark.parametrize("path", all_commands(cli), ids=lambda p: " ".join(p) or "pnl")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    res = run_cli(*path, "--help")
    assert res.code == 0
    assert "Usage: pnl" in res.out
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    assert cmd.help and len(cmd.help.strip()) > 20, f"{path} needs a real docstring"


def _command(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", [p for p in all_commands(cli) if p and not isinstance(_command(p), click.Group)],
                         ids=" ".join)
def test_every_command_speaks_json(path: tuple[str, ...]) -> None:
    assert any(getattr(p, "name", None) == "as_json" for p in _command(path).params), f"{path} has no --json"


def assert_one_line_error(res, code: int, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert res.code == code, (res.code, res.err)
    assert "Traceback" not in res.err
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1, res.err
    for needle in needles:
        assert needle in lines[0]


def no_runs_recorded(db: Db) -> bool:
    return db.scalar("SELECT count(*) FROM batch_runs") == 0 and \
        db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0


def test_malformed_date(db: Db) -> None:
    assert_one_line_error(run_cli("batch", "run", "--date", "2026-02-30", dsn=db.dsn), 2, "is not a date")
    assert no_runs_recorded(db)


def test_unknown_portfolio_changes_nothing(db: Db) -> None:
    pid = db.scalar("INSERT INTO portfolios (name) VALUES ('x') RETURNING id")
    db.execute("INSERT INTO market_prices (symbol, price_date, close_price) VALUES ('AAA', '2026-01-05', 1)")
    res = run_cli("batch", "run", "--date", "2026-01-05", "--portfolio", str(pid), "--portfolio", "424242",
                  dsn=db.dsn)
    assert_one_line_error(res, 2, "unknown portfolio id(s): 424242")
    assert no_runs_recorded(db)


def test_unreachable_database() -> None:
    res = run_cli("batch", "run", "--date", "2026-01-05", dsn=f"postgresql://pnl:hunter2@127.0.0.1:{free_port()}/pnl")
    assert_one_line_error(res, 1, "cannot connect", "connection refused")
    assert "hunter2" not in res.err + res.out


def test_unreachable_database_names_the_cause_for_migrate_and_rollback() -> None:
    """Through psycopg (yoyo) too: the cause, not only libpq's hint line (with its tab)."""
    dsn = f"postgresql://pnl:hunter2@127.0.0.1:{free_port()}/pnl"
    for args in (("migrate",), ("rollback", "--to", "0001", "--yes")):
        res = run_cli(*args, dsn=dsn)
        assert_one_line_error(res, 1, "cannot connect", "Connection refused")
        assert "\t" not in res.err and "hunter2" not in res.err + res.out


def test_wrong_password_is_one_line_and_never_printed(db: Db) -> None:
    bad = db.dsn.replace(":pnl-test-secret@", ":not-the-password@")
    for args in (("batch", "run", "--date", "2026-01-05"), ("status",), ("migrate",)):
        res = run_cli(*args, dsn=bad)
        assert_one_line_error(res, 1, "authentication failed" if args[0] != "migrate" else "password")
        assert "not-the-password" not in res.err + res.out
        assert "pnl-test-secret" not in res.err + res.out


def test_no_database_configured_says_so() -> None:
    assert_one_line_error(run_cli("status"), 2, "DATABASE_URL")
    assert_one_line_error(run_cli("status", dsn="mysql://x@y/z"), 2, "postgresql://")


def test_backfill_range_backwards(db: Db) -> None:
    res = run_cli("batch", "backfill", "--from", "2026-02-01", "--to", "2026-01-01", dsn=db.dsn)
    assert_one_line_error(res, 2, "before --from")


def test_status_json_on_an_empty_migrated_database(db: Db) -> None:
    res = run_cli("status", "--json", dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["schema_current"] is True
    assert out["database"].count("***") == 1 and "pnl-test-secret" not in res.out
    assert out["recent_runs"] == [] and out["unfinished_claims"] == []


def test_status_shows_runs_and_unfinished_claims(db: Db) -> None:
    pid = db.scalar("INSERT INTO portfolios (name, equity_balance) VALUES ('x', 5) RETURNING id")
    db.execute("INSERT INTO market_prices (symbol, price_date, close_price) VALUES ('AAA', '2026-01-05', 1)")
    assert run_cli("batch", "run", "--date", "2026-01-05", dsn=db.dsn).code == 0
    # A claim left by a run that died.
    db.execute("INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, is_complete, batch_run_id,"
               " claimed_at, lease_expires_at) VALUES (%s, '2026-01-06', false, 999, now(), now() - interval '1m')",
               pid)
    res = run_cli("status", dsn=db.dsn)
    assert res.code == 0, res.err
    assert "2026-01-05  succeeded" in res.out
    assert "2026-01-06  run #999: 1 claim(s), 1 with an expired lease" in res.out


def test_readme_cli_reference_is_current() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args", [(), ("batch",), ("db",)], ids=["pnl", "pnl batch", "pnl db"])
def test_a_group_without_a_command_shows_help_and_exits_0(args: tuple[str, ...]) -> None:
    res = run_cli(*args)
    assert res.code == 0, res.err
    assert "Usage: pnl" in res.out and "Commands:" in res.out and res.err == ""


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("batch", "run", "--date", "2026-02-30"), 2, "is not a date"),
    (("batch", "run", "--date", "2026-01-05", "--portfolio", "abc"), 2, "'abc' is not a whole number"),
    (("status", "--runs", "1.5"), 2, "'1.5' is not a whole number"),
    (("cleanup", "--older-than", "soon"), 2, "not a duration"),
    (("nosuch",), 2, "No such command"),
    (("status",), 1, "connection refused"),
])
def test_errors_with_json_are_one_json_object_on_stdout_and_one_line_on_stderr(
        args: tuple[str, ...], code: int, needle: str) -> None:
    dsn = f"postgresql://pnl:hunter2@127.0.0.1:{free_port()}/pnl"
    res = run_cli(*args, "--json", dsn=dsn)
    assert res.code == code, res.err
    assert json.loads(res.out) == {"error": json.loads(res.out)["error"], "exit_code": code}
    assert needle in json.loads(res.out)["error"]
    assert_one_line_error(res, code, needle)
    assert res.err.startswith("pnl: error: ")
    plain = run_cli(*args, dsn=dsn)                      # without --json: nothing on stdout
    assert plain.code == code and plain.out == "" and plain.err == res.err
    for raw in ("invalid literal", "integer range", "Traceback", "hunter2"):
        assert raw not in res.out + res.err


def test_a_port_that_is_not_a_number_is_bad_input() -> None:
    assert_one_line_error(run_cli("status", dsn="postgresql://pnl@127.0.0.1:abc/pnl"), 2, "a port is not a number")


def test_an_operational_error_in_json_names_the_fix(empty_db: Db) -> None:
    res = run_cli("batch", "run", "--date", "2026-01-05", "--json", dsn=empty_db.dsn)
    assert res.code == 1
    assert "pnl migrate" in json.loads(res.out)["error"] and json.loads(res.out)["exit_code"] == 1


def test_cli_holds_no_command_flow_and_one_error_mapping() -> None:
    """cli.py calls pnl/ functions and maps errors in one place (fail)."""
    from tests.conftest import ROOT
    text = (ROOT / "cli.py").read_text()
    assert text.count("except BadInput") + text.count("except PnlError") == 0
    assert "def fail(" in text and text.count("sys.exit(code)") == 1
    assert "PNL_TEST" not in text and "sql(" not in text and "conn.fetch" not in text


def test_no_test_hooks_in_the_shipped_code() -> None:
    from pnl.resources import sql_dir
    from tests.conftest import ROOT
    shipped = [ROOT / "cli.py", *(ROOT / "pnl").glob("*.py")]
    for path in shipped:
        text = path.read_text()
        assert "PNL_TEST" not in text and "pause_after_claim" not in text, path
    assert not any("pnl_test" in p.read_text() for p in sql_dir().rglob("*.sql"))


def test_no_sql_outside_sql_files() -> None:
    """Every statement pnl/ runs comes from sql/ (sql("name")), never an inline string."""
    import re

    from tests.conftest import ROOT
    inline = re.compile(r"""(execute|fetch|fetchrow|fetchval)\(\s*f?["']"""
                        r"""(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|LOCK)""", re.IGNORECASE)
    for path in (ROOT / "pnl").glob("*.py"):
        assert not inline.search(path.read_text()), path


@pytest.mark.parametrize(("args", "env", "names"), [
    (("--embedded", "--dsn", "postgresql://u@127.0.0.1:1/x"), {}, ("--dsn", "--embedded")),
    (("--embedded",), {"DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}, ("DATABASE_URL", "--embedded")),
    ((), {"DATABASE_URL": "postgresql://u@127.0.0.1:1/x", "PNL_EMBEDDED": "1"}, ("DATABASE_URL", "PNL_EMBEDDED")),
], ids=["both-flags", "flag-and-env", "both-env"])
def test_a_dsn_and_the_embedded_database_together_are_refused(tmp_path, args, env, names) -> None:  # type: ignore[no-untyped-def]
    """A cron environment with a leftover PNL_EMBEDDED=1 must not quietly batch the local embedded
    database instead of DATABASE_URL's: refused before anything starts (no data directory made)."""
    data_dir = tmp_path / "embedded"
    res = run_cli("--data-dir", str(data_dir), *args, "status", env=env)
    assert res.code == 2 and "Traceback" not in res.err, res.err
    assert all(n in res.err for n in names) and "two different databases" in res.err, res.err
    assert not data_dir.exists() and not (tmp_path / "embedded.json").exists()
