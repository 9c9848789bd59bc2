"""A password in any DSN form never reaches stdout or stderr, whatever the command.

Table-driven: every command of the Click group (enumerated, so a new command is
covered the day it is added) x every DSN form the drivers accept (URL user
info, ?password=, keyword/value with a quoted value, a malformed URL with an
unencoded # / ? @ in the password) x delivered by --dsn and by DATABASE_URL x
the right password, a wrong one, an unreachable server; against the real test
server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from cli import cli
from pnl import migrate
from pnl.db import check_dsn, redact, scrub
from pnl.errors import BadInput
from pnl.localpg import free_port
from tests.conftest import Db, ServerInfo, run_cli, run_in_process
from tests.test_cli import _command, all_commands

# Distinctive, and full of what breaks URLs and keyword strings: # / ? @ space ' \
PASSWORD = "Zq7Kx#Pw9Lm/Se4Rt?Cr8Vb@Ty3Nh x'\\Jk5Qd"
PIECES = [p for p in re.split(r"[#/?@ '\\]", PASSWORD) if len(p) >= 5]

# What each command needs to reach the database (default: no arguments, so a
# new command is still run). --data-dir and an empty PNL_PG_BINDIR keep the
# embedded commands away from any real server.
ARGS: dict[str, tuple[str, ...]] = {
    "rollback": ("--to", migrate.migration_ids()[-1], "--yes"),
    "batch run": ("--date", "2026-01-05"),
    "batch backfill": ("--from", "2026-01-05", "--to", "2026-01-07"),
    "cleanup": ("--older-than", "1h", "--dry-run"),
    "dedupe": ("--dry-run",),
    "repair": ("--all-broken", "--dry-run"),
    "seed": ("--portfolios", "3", "--positions", "1", "--days", "3"),
    "db url": ("--show-password",),
}
LEAVES = [" ".join(p) for p in all_commands(cli) if p and not hasattr(_command(p), "commands")]


def dsn_forms(user: str, password: str, host: str, port: int, db: str) -> dict[str, str]:
    kw = password.replace("\\", "\\\\").replace("'", "\\'")
    return {
        "url": f"postgresql://{quote(user)}:{quote(password, safe='')}@{host}:{port}/{db}",
        "query": f"postgresql://{host}:{port}/{db}?user={quote(user)}&password={quote(password, safe='')}",
        "keyword": f"host={host} port={port} user={user} password='{kw}' dbname={db}",
        "keyword_plain": f"host={host} port={port} dbname={db} user={user} password=Zq7Kx9Pw9LmSe4Rt",
        "malformed": f"postgresql://{user}:{password}@{host}:{port}/{db}",
    }


@pytest.fixture
def secret_role(db: Db) -> Iterator[str]:
    """A login role whose password is PASSWORD (and Zq7Kx9Pw9LmSe4Rt for the plain form: one role each)."""
    name = f"secret_{db.conn.info.dbname}"[-40:]
    db.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(name),
                                                                          sql.Literal(PASSWORD)))
    db.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(name + "_p"),
                                                                          sql.Literal("Zq7Kx9Pw9LmSe4Rt")))
    try:
        yield name
    finally:
        for role in (name, name + "_p"):
            db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def assert_no_secret(text: str, context: object) -> None:
    for needle in (PASSWORD, quote(PASSWORD, safe=""), "Zq7Kx9Pw9LmSe4Rt", *PIECES):
        assert needle not in text, (context, needle, text[-600:])
    assert "Traceback" not in text, (context, text[-600:])


MATRIX = [(form, "right") for form in ("url", "query", "keyword", "keyword_plain", "malformed")] + \
         [(form, scenario) for scenario in ("wrong", "unreachable") for form in ("url", "query", "keyword")]


@pytest.mark.parametrize(("form", "scenario"), MATRIX, ids=[f"{f}-{s}" for f, s in MATRIX])
def test_no_command_prints_the_password(db: Db, pg_server: ServerInfo, secret_role: str, form: str, scenario: str,
                                        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    user = secret_role + ("_p" if form == "keyword_plain" else "")
    port = free_port() if scenario == "unreachable" else pg_server.port
    if scenario == "wrong":
        user = pg_server.user  # its password is not PASSWORD
    dsn = dsn_forms(user, PASSWORD, pg_server.host, port, db.conn.info.dbname)[form]
    empty_bindir = tmp_path / "no-binaries"
    empty_bindir.mkdir()
    # The embedded commands (db ..., demo) fail fast here, touching no real server.
    env = {"PNL_PG_SOURCE": "system", "PNL_PG_BINDIR": str(empty_bindir)}
    codes = {}
    for command in LEAVES:
        args = ("--data-dir", str(tmp_path / "data"), *command.split(), *ARGS.get(command, ()))
        for how, res in (("--dsn", run_in_process(capsys, monkeypatch, ("--dsn", dsn, *args, "--json"), env)),
                         ("DATABASE_URL", run_in_process(capsys, monkeypatch, args, {**env, "DATABASE_URL": dsn}))):
            assert_no_secret(res.out + res.err, (form, scenario, command, how))
            assert res.code in (0, 1, 2), (command, how, res.code, res.err)
            codes[(command, how)] = res.code
    if form == "malformed":  # refused before any connection, naming the fix
        res = run_cli("status", dsn=dsn)
        assert res.code == 2 and "percent-encode" in res.err and "PGPASSFILE" in res.err
    elif scenario == "right":  # the password worked, in every form and both ways of giving it
        assert codes[("status", "--dsn")] == codes[("status", "DATABASE_URL")] == 0
        assert codes[("migrate", "DATABASE_URL")] == codes[("verify", "--dsn")] == 0
    else:
        assert codes[("status", "--dsn")] == codes[("batch run", "DATABASE_URL")] == 1


@pytest.mark.parametrize("form", ["url", "query", "keyword", "malformed"])
def test_real_processes_never_print_the_password(db: Db, pg_server: ServerInfo, form: str) -> None:
    """The same, as real `pnl` processes, for the commands that talk to the
    database through each driver (asyncpg; psycopg and yoyo in migrate)."""
    dsn = dsn_forms(pg_server.user, PASSWORD, pg_server.host, pg_server.port, db.conn.info.dbname)[form]
    for args in (("status",), ("status", "--json"), ("migrate",), ("batch", "run", "--date", "2026-01-05")):
        for res in (run_cli(*args, dsn=dsn), run_cli("--dsn", dsn, *args)):
            assert res.code in (1, 2), (args, res.err)
            assert len(res.err.strip().splitlines()) == 1, res.err
            assert_no_secret(res.out + res.err, (form, args))


def test_status_shows_the_database_without_its_password(db: Db, pg_server: ServerInfo, secret_role: str) -> None:
    for form, dsn in dsn_forms(secret_role, PASSWORD, pg_server.host, pg_server.port,
                               db.conn.info.dbname).items():
        if form in ("malformed", "keyword_plain"):
            continue
        res = run_cli("status", "--no-verify", dsn=dsn)
        assert res.code == 0, (form, res.err)
        line = res.out.splitlines()[0]
        assert line.startswith("database  ") and "***" in line and pg_server.host in line, line
        assert_no_secret(res.out, form)


def test_pgpassfile_keeps_the_password_out_of_the_dsn(db: Db, pg_server: ServerInfo, tmp_path: Path) -> None:
    """asyncpg (every command) and libpq (pnl migrate) both read PGPASSFILE."""
    dsn = f"postgresql://{pg_server.user}@{pg_server.host}:{pg_server.port}/{db.conn.info.dbname}"
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{pg_server.host}:{pg_server.port}:*:{pg_server.user}:{pg_server.password}\n")
    passfile.chmod(0o600)
    env = {"PGPASSFILE": str(passfile), "HOME": str(tmp_path)}
    for args in (("status", "--no-verify"), ("migrate",), ("batch", "run", "--date", "2026-01-05")):
        res = run_cli(*args, dsn=dsn, env=env)
        assert res.code == 0, (args, res.err)
    no_passfile = run_cli("status", dsn=dsn, env={"PGPASSFILE": str(tmp_path / "missing"), "HOME": str(tmp_path)})
    assert no_passfile.code == 1 and "cannot connect" in no_passfile.err


def test_help_recommends_database_url_and_pgpassfile() -> None:
    text = " ".join(run_cli("--help").out.split())
    assert "DATABASE_URL" in text and "PGPASSFILE" in text and "ps" in text


def test_keyword_dsn_is_accepted_and_bad_ones_are_refused_without_echo() -> None:
    url = check_dsn("host=db.internal port=6432 user=pnl password='a b\\'c' dbname=book sslmode=require")
    assert url == "postgresql://pnl:a%20b%27c@db.internal:6432/book?sslmode=require"
    assert check_dsn("host=/var/run/postgresql dbname=pnl") == "postgresql:///pnl?host=/var/run/postgresql"
    for bad, why in (("host=h password=Zq7Kx9Pw9Lm junk", "missing '='"),
                     ("host=h password='Zq7Kx9Pw9Lm", "no closing quote"),
                     ("host=h Zq7Kx9Pw9Lm=1", "unknown keyword"),
                     ("postgresql://u:Zq7Kx#9Pw9Lm@h/db", "'#'"),
                     ("postgresql://u:Zq7Kx/9Pw9Lm@h/db", "a port is not a number"),
                     ("postgresql://u:1234/Zq7Kx9Pw9Lm@h/db", "database name"),
                     ("postgresql://u:12?Zq7Kx9Pw9Lm@h/db", "'='"),
                     ("postgresql://u:Zq7Kx@9Pw9Lm@h/db", "more than one '@'"),
                     ("postgresql://u:Zq7Kx9Pw9Lm@[::1/db", "cannot be parsed"),
                     ("mysql://u:Zq7Kx9Pw9Lm@h/db", "mysql://")):
        with pytest.raises(BadInput) as info:
            check_dsn(bad)
        assert why in str(info.value) and "Zq7Kx" not in str(info.value) and "9Pw9Lm" not in str(info.value)


@pytest.mark.parametrize(("dsn", "secret"), [
    ("postgresql://u:Zq7Kx9Pw9Lm@h/db", "Zq7Kx9Pw9Lm"),
    ("postgresql://h/db?password=Zq7Kx9Pw9Lm&sslmode=require", "Zq7Kx9Pw9Lm"),
    ("postgresql://h/db?sslpassword=Zq7Kx9Pw9Lm", "Zq7Kx9Pw9Lm"),
    ("host=h password='Zq7Kx 9Pw9Lm'", "Zq7Kx 9Pw9Lm"),
    ("host=h password = Zq7Kx9Pw9Lm", "Zq7Kx9Pw9Lm"),
    ("postgresql://u:Zq7Kx#9Pw9Lm@h/db", "Zq7Kx#9Pw9Lm"),
    ("postgresql://u:Zq7Kx?9Pw9Lm@h/db", "Zq7Kx?9Pw9Lm"),
    ("postgresql://u:Zq7Kx@9Pw9Lm@h/db", "Zq7Kx@9Pw9Lm"),
    ("postgresql://u:Zq7Kx/9Pw9Lm@h/db", "Zq7Kx/9Pw9Lm"),
])
def test_redact_and_scrub_every_form(dsn: str, secret: str) -> None:
    shown = redact(dsn)
    assert "Zq7Kx" not in shown and "9Pw9Lm" not in shown and "***" in shown
    # A driver message that echoes the DSN, the pieces a parser cut the password
    # into (an unencoded # / ? @ or blank), its own parameter repr, a normalized URL.
    cut = re.split(r"[#/?@ ]", secret, maxsplit=1)
    head, tail = (cut[0], cut[1]) if len(cut) == 2 else (secret, secret)
    message = (f"could not connect with {dsn}; invalid port '{head}'; bad query field {tail}@h/db; "
               f"ConnectionParameters(user='u', password='{secret}'); postgresql+psycopg://u:{quote(secret)}@h/db")
    cleaned = scrub(message, dsn)
    assert "Zq7Kx" not in cleaned and "9Pw9Lm" not in cleaned, cleaned
    # Even without knowing the DSN, URL passwords and password=... parameters are masked.
    blind = scrub("dsn postgresql://u:Zq7Kx9Pw9Lm@h/db and password='Zq7Kx 9Pw9Lm' and PGPASSWORD=Zq7Kx9Pw9Lm")
    assert "Zq7Kx" not in blind and "9Pw9Lm" not in blind, blind


def test_migrate_error_through_psycopg_never_shows_the_password(pg_server: ServerInfo) -> None:
    """libpq's own message for a failed connection, through yoyo, is scrubbed too."""
    dsn = f"postgresql://nobody_here:{quote(PASSWORD, safe='')}@{pg_server.host}:{pg_server.port}/nowhere"
    res = run_cli("migrate", dsn=dsn)
    assert res.code == 1 and "cannot connect" in res.err
    assert_no_secret(res.out + res.err, "migrate")
    with psycopg.connect(f"postgresql://{pg_server.user}:{pg_server.password}@{pg_server.host}:{pg_server.port}"
                         "/postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
