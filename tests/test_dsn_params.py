"""libpq's connection parameters that asyncpg does not know.

A cron line's DSN often carries `connect_timeout` (and sometimes `options`).
`pnl migrate` (psycopg, libpq) took them; every other command (asyncpg, which
sends a URL's unknown query fields to the server as settings) failed with
`unrecognized configuration parameter "connect_timeout"`, exit 1. They are now
translated for asyncpg; values that cannot work, and libpq parameters asyncpg
has no equivalent for, are refused by name before connecting (exit 2), never
echoing the DSN."""

from __future__ import annotations

import json

import pytest

from pnl.db import asyncpg_connect_args, check_dsn
from pnl.errors import BadInput
from tests.conftest import Db, run_cli
from tests.data import random_book
from tests.test_chain_holes import CALENDAR


def test_connect_timeout_and_options_become_asyncpg_arguments() -> None:
    url = check_dsn("host=h port=5433 user=u password='s e' dbname=d connect_timeout=7 "
                    "options='-c search_path=book -cwork_mem=8MB --lock-timeout=5s'")
    dsn, timeout, settings = asyncpg_connect_args(url)
    assert dsn == "postgresql://u:s%20e@h:5433/d"
    assert timeout == 7.0
    assert settings == {"search_path": "book", "work_mem": "8MB", "lock_timeout": "5s"}
    # libpq's rules: at least 2 seconds; 0 (or less) waits as long as it takes
    assert asyncpg_connect_args("postgresql://h/d?connect_timeout=1")[1] == 2.0
    assert asyncpg_connect_args("postgresql://h/d?sslmode=require&connect_timeout=0") == \
        ("postgresql://h/d?sslmode=require", None, {})
    assert asyncpg_connect_args("postgresql://h/d")[1] == 10.0


@pytest.mark.parametrize(("dsn", "why"), [
    ("host=h password=Zq7Kx9Pw9Lm port=notaport dbname=d", "a port is not a number"),
    ("host=h password=Zq7Kx9Pw9Lm port=99999 dbname=d", "a port is not a number from 1 to 65535"),
    ("postgresql://u:Zq7Kx9Pw9Lm@h/d?target_session_attrs=bogus", "target_session_attrs must be one of"),
    ("host=h password=Zq7Kx9Pw9Lm target_session_attrs=bogus", "target_session_attrs must be one of"),
    ("host=h password=Zq7Kx9Pw9Lm sslmode=bogus", "sslmode must be one of"),
    ("postgresql://u:Zq7Kx9Pw9Lm@h/d?sslmode=bogus", "sslmode must be one of"),
    ("postgresql://u:Zq7Kx9Pw9Lm@h/d?connect_timeout=soon", "connect_timeout is not a whole number"),
    ("host=h password=Zq7Kx9Pw9Lm options='-x'", "options: only -c name=value"),
    ("postgresql://u:Zq7Kx9Pw9Lm@h/d?options=-c%20novalue", "options: each -c needs name=value"),
    ("host=h password=Zq7Kx9Pw9Lm keepalives=1", "libpq's 'keepalives' is not supported"),
    ("postgresql://u:Zq7Kx9Pw9Lm@h/d?keepalives=1", "libpq's 'keepalives', which pnl's driver does not"),
    ("host=h password=Zq7Kx Pw9Lm=1", "unknown keyword ("),      # a blank in a password: not named
])
def test_a_parameter_that_cannot_work_is_refused_by_name_without_the_dsn(dsn: str, why: str) -> None:
    with pytest.raises(BadInput) as info:
        check_dsn(dsn)
    message = str(info.value)
    assert why in message and "Zq7Kx" not in message and "Pw9Lm" not in message, message
    assert "percent-encode" not in message       # not a URL-structure problem


def test_every_command_runs_with_a_connect_timeout_and_applies_options(db: Db) -> None:
    random_book(db.conn, 4, CALENDAR, seed=81)
    day = CALENDAR[0].isoformat()
    res = run_cli("batch", "run", "--date", day, "--json", dsn=db.dsn + "?connect_timeout=10")
    assert res.code == 0, res.err
    assert json.loads(res.out)["processed"] == 4
    assert run_cli("status", "--json", dsn=db.dsn + "?connect_timeout=10").code == 0
    # options reach the server: a read-only default makes the run's first write fail
    read_only = db.dsn + "?connect_timeout=10&options=-c%20default_transaction_read_only%3Don"
    res = run_cli("batch", "run", "--date", CALENDAR[1].isoformat(), "--json", dsn=read_only)
    assert res.code == 1 and "read-only transaction" in res.out + res.err, (res.out, res.err)
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE snapshot_date = %s", CALENDAR[1]) == 0
    # the keyword form, the same
    info = db.conn.info
    keyword = (f"host={info.host} port={info.port} user={info.user} password={info.password} "
               f"dbname={info.dbname} connect_timeout=10 options='-c search_path=public'")
    res = run_cli("batch", "run", "--date", CALENDAR[1].isoformat(), "--json", dsn=keyword)
    assert res.code == 0, res.err
    assert json.loads(res.out)["processed"] == 4
    assert info.password not in res.out + res.err
