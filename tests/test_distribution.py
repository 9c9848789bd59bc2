"""The wheel is self-contained: built from this checkout, installed elsewhere,
it runs from any directory with no checkout (sql/ and migrations/ inside it).
.ci/run additionally installs it into a fresh venv with its dependencies
(scripts/smoke-wheel); here the dependencies are this environment's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, CliResult, Db


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=300)
    (found,) = out.glob("pnl-*.whl")
    return found


@pytest.fixture
def installed(wheel: Path, tmp_path: Path) -> Iterator[Path]:
    """The wheel installed into a directory of its own (no checkout anywhere near it)."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    yield target
    shutil.rmtree(target, ignore_errors=True)


def run_installed(site: Path, cwd: Path, *args: str, dsn: str) -> CliResult:
    """`python -m pnl ARGS` importing pnl and cli from `site` only, run in `cwd`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PNL_EMBEDDED")}
    env |= {"PYTHONPATH": str(site), "DATABASE_URL": dsn}
    proc = subprocess.run([sys.executable, "-P", "-m", "pnl", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300, stdin=subprocess.DEVNULL)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def test_the_wheel_carries_every_sql_and_migration_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("sql", "migrations"):
        for path in (ROOT / folder).rglob("*.sql"):
            assert f"pnl/{path.relative_to(ROOT).as_posix()}" in names, path
    assert {"cli.py", "pnl/__main__.py", "pnl/migrations/README.md"} <= names


def test_the_installed_wheel_works_from_any_directory(installed: Path, tmp_path: Path, empty_db: Db) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run_installed(installed, elsewhere, "--version", dsn=empty_db.dsn)
    assert where.code == 0 and "0.1.0" in where.out
    origin = subprocess.run([sys.executable, "-P", "-c", "import cli, pnl.resources as r; "
                             "print(cli.__file__, r.sql_dir(), r.migrations_dir())"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(installed)},
                            cwd=elsewhere)
    assert origin.returncode == 0, origin.stderr
    assert all(p.startswith(str(installed)) for p in origin.stdout.split()), origin.stdout

    steps = [("migrate",), ("seed", "--portfolios", "30", "--positions", "5", "--days", "10", "--end", "2026-11-27"),
             ("batch", "run", "--date", "2026-11-27", "--json"), ("verify",)]
    for step in steps:
        res = run_installed(installed, elsewhere, *step, dsn=empty_db.dsn)
        assert res.code == 0, (step, res.err)
    assert empty_db.scalar("SELECT count(*) FROM portfolio_snapshots WHERE snapshot_date = '2026-11-27'"
                           " AND is_complete") == 30
    forward = [p for p in (ROOT / "migrations").glob("*.sql") if not p.name.endswith(".rollback.sql")]
    assert empty_db.scalar("SELECT count(*) FROM _yoyo_migration") == len(forward)


def test_an_installation_without_migrations_refuses_instead_of_saying_current(installed: Path, tmp_path: Path,
                                                                               empty_db: Db) -> None:
    for path in (installed / "pnl" / "migrations").glob("*.sql"):
        path.unlink()
    for args in (("migrate",), ("status",), ("batch", "run", "--date", "2026-11-27")):
        res = run_installed(installed, tmp_path, *args, "--json", dsn=empty_db.dsn)
        assert res.code == 1, (args, res.out, res.err)
        assert "installation" in json.loads(res.out)["error"] and "current" not in res.out
        assert "Traceback" not in res.err
    assert empty_db.all("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace") == []
