"""A small run of the benchmark, for correctness only (no timing is asserted):
the batch, cold, again, with workers and as parallel processes, against the
floor and the parallel floor, the worker/process scaling, the WAL table and the
history axis (a book with prior complete snapshots, a one-date run, status,
verify and a 5-date catch-up) must all write exactly the floor's numbers.
The database URL reaches bench/run.py and its pnl children through the
environment, never through argv."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, ServerInfo


def test_benchmark_smoke_run_matches_the_floor(pg_server: ServerInfo) -> None:
    dsn = f"postgresql://{pg_server.user}:{pg_server.password}@{pg_server.host}:{pg_server.port}/postgres"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PNL_EMBEDDED")}
    env["PNL_BENCH_DSN"] = dsn
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--portfolios", "2000", "--positions", "6",
         "--symbols", "150", "--chunk-sizes", "300,1000", "--workers", "3", "--history", "1,3",
         "--scaling", "1,2", "--json"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["numbers_match_floor"] is True
    n = report["portfolios"]

    # goals table: both floors, then the batch rows, each with its goal and a verdict
    rows = {r["name"]: r for r in report["results"]}
    names = list(rows)
    assert names[0].startswith("floor") and names[1].startswith("parallel floor") and len(names) == 6
    assert report["parallel_floor_connections"] == 2
    assert all(r["ratio"] > 0 and r["ratio_parallel"] > 0 and r["wal_bytes_per_portfolio"] > 0
               for r in report["results"] if "again" not in r["name"])
    goals = [r for r in report["results"] if r["goal"]]
    assert [g["goal"] for g in goals] == ["<= 1.0x floor", "<= 1.3x floor", "<= 0.1x floor", "<= 1.2x floor"]
    assert all(isinstance(g["goal_met"], bool) for g in goals)
    rerun = report["results"][4]
    assert rerun["processed"] == 0 and rerun["skipped"] == n
    assert all(r["processed"] == n for r in report["results"][2:] if r is not rerun)
    assert [c["chunk_size"] for c in report["chunk_curve"]] == [300, 1000]

    # WAL: the floor inserts each snapshot once; so does the batch (the one-write
    # path: claim and result are one INSERT; nothing is updated afterwards)
    wal = {w["name"]: w for w in report["wal"]}
    floor_wal = wal["floor (1 connection)"]
    assert floor_wal["snapshots_inserted"] == n and floor_wal["snapshots_updated"] == 0
    batch_wal = [w for w in report["wal"] if w["name"].startswith("pnl batch run")]
    assert len(batch_wal) == 2
    assert all(w["snapshots_inserted"] == n and w["snapshots_updated"] == 0 and w["wal_bytes"] > 0
               for w in batch_wal)

    # scaling: --workers 1 and 2 in one process, 2 processes of one connection
    assert [(s["kind"], s["count"]) for s in report["scaling"]] == [("workers", 1), ("workers", 2),
                                                                    ("processes", 2)]
    assert all(s["processed"] == n and s["per_second"] > 0 for s in report["scaling"])

    # history: each depth measured, the ratios, bytes per snapshot row
    h = report["history"]
    assert [d["depth"] for d in h["depths"]] == [1, 3]
    assert h["catch_up_mode"] in ("batch run", "batch backfill") and len(h["catch_up_dates"]) == 5
    for d in h["depths"]:
        assert d["verify_healthy"] is True
        assert min(d["one_date_seconds"], d["status_seconds"], d["verify_seconds"], d["catch_up_seconds"]) > 0
    assert set(h["flatness"]) >= {"one_date_seconds", "status_seconds", "verify_seconds", "catch_up_seconds"}
    assert h["snapshot_bytes_per_row"]["rows"] == n * (3 + 1) and h["snapshot_bytes_per_row"]["total"] > 0
