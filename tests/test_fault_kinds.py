"""A fault that looks like a lost connection while the server answers.

asyncpg raises InterfaceError both for a connection that is gone ("connection
is closed") and for misuse of a live one ("another operation is in
progress": a bug in pnl). The run waits out the first kind and tries the step
again; a step that kept failing with the second was retried after each
reconnect, which always worked, forever: the run hung. Asserted on a real
server, on the run's exit code, report and batch_runs row."""

from __future__ import annotations

import json

import asyncpg
import pytest

from pnl import batch
from tests.conftest import Db, run_in_process
from tests.data import random_book
from tests.test_equity_as_of import CALENDAR


def test_a_step_that_fails_with_the_server_answering_ends_the_run_instead_of_retrying_forever(
        db: Db, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    random_book(db.conn, 5, CALENDAR, seed=61)
    calls = 0

    async def broken_step(*_: object) -> None:
        nonlocal calls
        calls += 1
        if calls > 10:     # the old loop: fail the test instead of hanging it
            raise RuntimeError("the step was tried more than 10 times")
        raise asyncpg.InterfaceError("cannot perform operation: another operation is in progress")

    monkeypatch.setattr(batch, "_fix_run_marks", broken_step)
    res = run_in_process(capsys, monkeypatch, ("batch", "run", "--date", CALENDAR[0].isoformat(), "--json"),
                         {"DATABASE_URL": db.dsn})
    assert res.code == 1, (res.out, res.err)
    out = json.loads(res.out)
    assert out["status"] == "failed"
    assert "another operation is in progress" in out["error"]
    assert "again after 3 reconnects that worked at once" in out["error"]
    assert calls == 4                      # the first try and one after each of 3 reconnects
    assert db.scalar("SELECT status FROM batch_runs") == "failed"
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots") == 0
    # nothing was broken but the step: the same run without the fault does all the work
    monkeypatch.undo()
    res = run_in_process(capsys, monkeypatch, ("batch", "run", "--date", CALENDAR[0].isoformat(), "--json"),
                         {"DATABASE_URL": db.dsn})
    assert res.code == 0, res.err
    assert json.loads(res.out)["processed"] == 5
