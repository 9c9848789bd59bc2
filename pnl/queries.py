"""The hand-written SQL in sql/, loaded once, by name ("batch/claim_slots")."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pnl.errors import PnlError
from pnl.resources import sql_dir as default_sql_dir


@cache
def _load_all(sql_dir: Path) -> dict[str, str]:
    return {
        path.relative_to(sql_dir).with_suffix("").as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(sql_dir.rglob("*.sql"))
    }


def sql(name: str, sql_dir: Path | None = None) -> str:
    """Return the text of sql/<name>.sql; a missing file is an incomplete installation."""
    folder = sql_dir or default_sql_dir()
    queries = _load_all(folder)
    try:
        return queries[name]
    except KeyError:
        raise PnlError(f"this pnl installation has no {name}.sql in {folder}: reinstall pnl") from None


def names(sql_dir: Path | None = None) -> list[str]:
    return sorted(_load_all(sql_dir or default_sql_dir()))
