"""Where a run starts walking the book. Runs started together (two cron hosts,
a retry while the first still runs) begin at different chunks, set by their
run ids, so each mostly finds its chunks untouched instead of all starting at
the lowest id and stepping around each other's row locks. The chunks are the
ones a walk from the lowest id makes; only their order turns."""

from __future__ import annotations

import json
from datetime import date

from pnl.batch import starting_chunk
from tests.conftest import Db, run_cli
from tests.data import random_book

DAY = date(2026, 6, 1)


def test_runs_with_consecutive_ids_start_at_chunks_far_apart() -> None:
    for first in range(1, 50):
        starts = sorted(starting_chunk(r, 20) for r in range(first, first + 4))
        assert 0 <= starts[0] and starts[-1] < 20
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)] + [starts[0] + 20 - starts[-1]]
        assert min(gaps) >= 2, (first, starts)
    assert {starting_chunk(r, 1) for r in range(1, 20)} == {0}      # one chunk: nothing to turn
    assert {starting_chunk(r, 0) for r in range(1, 20)} == {0}


def test_a_run_walks_from_its_starting_chunk_to_the_end_then_the_chunks_before_it(db: Db) -> None:
    random_book(db.conn, 30, [DAY], seed=51)
    ids = [r[0] for r in db.all("SELECT id FROM portfolios ORDER BY id")]
    db.execute("SELECT setval(pg_get_serial_sequence('batch_runs', 'id'), 6)")     # the run will be #7
    first = starting_chunk(7, 8)                      # 30 portfolios in chunks of 4: 8 chunks
    assert 0 < first < 7                              # a real wrap-around
    res = run_cli("batch", "run", "--date", DAY.isoformat(), "--chunk-size", "4", "--workers", "1", "--json",
                  dsn=db.dsn)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert (out["run_id"], out["processed"], out["failed"]) == (7, 30, 0)
    done = db.all("SELECT portfolio_id, completed_at FROM portfolio_snapshots"
                  " WHERE snapshot_date = %s AND is_complete", DAY)
    assert sorted(p for p, _ in done) == ids          # every portfolio once, those before the start too
    # One transaction per chunk: its now() is each row's completed_at, so the rows group into chunks.
    chunks: dict[object, list[int]] = {}
    for pid, at in done:
        chunks.setdefault(at, []).append(pid)
    walk = [sorted(c) for _, c in sorted(chunks.items(), key=lambda kv: kv[0])]
    expected = [ids[i:i + 4] for i in range(0, 30, 4)]
    assert walk == expected[first:] + expected[:first]


def test_a_portfolio_added_while_the_run_wraps_around_is_still_visited(db: Db) -> None:
    """A walk from the lowest id meets a portfolio created during the run at its end; so
    must a walk that wrapped around: the run ends with the ids added after its first lap."""
    random_book(db.conn, 30, [DAY], seed=52)
    lowest = db.scalar("SELECT min(id) FROM portfolios")
    db.execute("SELECT setval(pg_get_serial_sequence('batch_runs', 'id'), 6)")     # run #7 starts at chunk 2
    db.conn.execute(f"""
        CREATE FUNCTION pnl_test_add_late() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM new_rows WHERE portfolio_id = {lowest})      -- the second lap's first chunk
               AND NOT EXISTS (SELECT 1 FROM portfolios WHERE name = 'late') THEN
                INSERT INTO portfolios (name, equity_balance) VALUES ('late', 100);
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER pnl_test_add_late AFTER INSERT ON portfolio_snapshots
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pnl_test_add_late()""")
    res = run_cli("batch", "run", "--date", DAY.isoformat(), "--chunk-size", "4", "--workers", "1", "--json",
                  dsn=db.dsn)
    assert res.code == 0, res.err
    late = db.scalar("SELECT id FROM portfolios WHERE name = 'late'")
    assert late is not None and late > lowest + 29
    assert json.loads(res.out)["processed"] == 31
    assert db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = %s AND snapshot_date = %s"
                     " AND is_complete", late, DAY) == 1
