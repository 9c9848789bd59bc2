"""A small run of the benchmark, for correctness only (no timing is asserted):
the batch, cold, again, with workers and as parallel processes, must write
exactly the floor's numbers for every portfolio."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, ServerInfo


def test_benchmark_smoke_run_matches_the_floor(pg_server: ServerInfo) -> None:
    dsn = f"postgresql://{pg_server.user}:{pg_server.password}@{pg_server.host}:{pg_server.port}/postgres"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--dsn", dsn, "--portfolios", "2000", "--positions", "6",
         "--symbols", "150", "--chunk-sizes", "300,1000", "--workers", "3", "--json"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["numbers_match_floor"] is True
    names = [r["name"] for r in report["results"]]
    assert names[0].startswith("floor") and len(names) == 6
    rerun = report["results"][3]
    assert rerun["processed"] == 0 and rerun["skipped"] == 2000
    assert all(r["processed"] == 2000 for r in report["results"][1:] if r["processed"] and r is not rerun)
    assert [c["chunk_size"] for c in report["chunk_curve"]] == [300, 1000]
