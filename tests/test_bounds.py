"""Bounds: every numeric, duration and date option, and every environment
variable pnl reads, answers any value with one line and no traceback; a bad
option value exits 2 and changes nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
import pytest

from cli import DateParam, DurationParam, cli
from tests.conftest import Db, run_cli, run_in_process
from tests.test_cli import _command, all_commands, assert_one_line_error

# Invalid for every numeric, duration and date option pnl has.
HOSTILE = ["", " ", "-1", "99999999999999999999", "1000000000d", "1e17", "NaN", "inf", "-inf", "12abc", "0x10",
           "2026-13-45", "\U0001F600", "\u0663" * 20, "9" * 400, "-99999999999999999999d", "1.5"]


def value_options() -> list[tuple[tuple[str, ...], str]]:
    """(command path, option) for every option taking a number, a duration or a date."""
    found = []
    for path in all_commands(cli):
        for param in _command(path).params:
            if isinstance(param, click.Option) and not param.is_flag and isinstance(
                    param.type, click.types._NumberParamTypeBase | DurationParam | DateParam):
                found.append((path, param.opts[0]))
    return found


OPTIONS = value_options()


def test_the_table_covers_the_options_that_matter() -> None:
    names = {(" ".join(p), o) for p, o in OPTIONS}
    for expected in (("", "--statement-timeout"), ("batch run", "--lease"), ("batch run", "--portfolio"),
                     ("batch run", "--date"), ("cleanup", "--older-than"), ("dedupe", "--restore"),
                     ("seed", "--seed"), ("repair", "--portfolio"), ("status", "--runs")):
        assert expected in names, expected


@pytest.mark.parametrize(("path", "option"), OPTIONS, ids=[" ".join([*p, o]) for p, o in OPTIONS])
def test_hostile_values_exit_2_in_one_line(path: tuple[str, ...], option: str, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for value in HOSTILE:
        args = (*path, option, value) if path else (option, value, "status")
        res = run_in_process(capsys, monkeypatch, args, {})
        assert res.code == 2, (path, option, value, res.err)
        assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1, res.err
        assert option in res.err, res.err


@pytest.mark.parametrize(("param", "good", "bad"), [
    (DurationParam(timedelta(seconds=1), timedelta(days=7)), ["1s", "7d", "168h", " 30 m "], ["8d", "604801s", "0s"]),
    (DurationParam(timedelta(seconds=1), timedelta(hours=24)), ["24h", "1s"], ["25h", "2d"]),
])
def test_duration_bounds(param: DurationParam, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert param.convert(value, None, None) <= param.maximum
    for value in bad:
        with pytest.raises(click.BadParameter):
            param.convert(value, None, None)


def test_a_bad_option_changes_nothing(db: Db) -> None:
    db.execute("INSERT INTO portfolios (name) VALUES ('x')")
    for args in (("batch", "run", "--date", "2026-01-05", "--lease", "1000000000d"),
                 ("batch", "run", "--date", "2026-01-05", "--portfolio", "99999999999999999999"),
                 ("--statement-timeout", "25h", "batch", "run", "--date", "2026-01-05"),
                 ("cleanup", "--older-than", "99999d", "--yes")):
        assert_one_line_error(run_cli(*args, dsn=db.dsn), 2)
    assert db.scalar("SELECT count(*) FROM batch_runs") == 0


@pytest.mark.parametrize(("name", "values", "args"), [
    ("PNL_EMBEDDED", ["maybe", "2", "\U0001F600", "yes please"], ("status",)),
    ("PNL_PG_SOURCE", ["cloud", "\U0001F600", "system; rm -rf /"], ("db", "status")),
])
def test_hostile_environment_exits_2(name: str, values: list[str], args: tuple[str, ...],
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for value in values:
        res = run_in_process(capsys, monkeypatch, args, {name: value})
        assert res.code == 2, (name, value, res.err)
        assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1, res.err


@pytest.mark.parametrize("dsn", [
    "", " ", "\U0001F600", "=", "host=", "host='", "postgresql://[", "postgresql://u@h:99999999/db",
    "postgresql://u@127.0.0.1:1/db?sslmode=bogus", "postgresql://\u00fc:\u00fc@\u00fc\u00fc/\u00fc",
    "postgresql://u@" + "h" * 300 + "/db", "postgresql:///db?host=/nonexistent/dir", "postgres://u@127.0.0.1:1/x",
    "postgresql://u@127.0.0.1:1/db?options=-c%20x%3Dy", "host=127.0.0.1 port=abc", "file:///etc/passwd",
])
def test_hostile_database_url_is_one_line(dsn: str, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for args in (("status",), ("migrate",), ("batch", "run", "--date", "2026-01-05")):
        res = run_in_process(capsys, monkeypatch, args, {"DATABASE_URL": dsn})
        assert res.code in (1, 2), (dsn, args, res.err)
        assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1, (dsn, args, res.err)


def test_hostile_bindir_and_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("x")
    cases = [
        ({"PNL_PG_BINDIR": str(tmp_path), "PNL_PG_SOURCE": "system"},
         ("--data-dir", str(tmp_path / "d"), "db", "start")),
        ({"PNL_PG_BINDIR": "\U0001F600"}, ("--data-dir", str(tmp_path / "d"), "db", "status")),
        ({}, ("--data-dir", str(tmp_path / "a-file"), "db", "status")),
        ({}, ("--data-dir", "/proc/self/nope/pg", "db", "start")),
    ]
    for env, args in cases:
        res = run_in_process(capsys, monkeypatch, args, env)
        assert res.code in (0, 1, 2), (env, args, res.err)
        assert "Traceback" not in res.err and len(res.err.strip().splitlines()) <= 1, (env, args, res.err)
