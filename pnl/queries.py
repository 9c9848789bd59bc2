"""The hand-written SQL in sql/, loaded once, by name ("batch/claim_slots")."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pnl.resources import sql_dir as default_sql_dir


@cache
def _load_all(sql_dir: Path) -> dict[str, str]:
    return {
        path.relative_to(sql_dir).with_suffix("").as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(sql_dir.rglob("*.sql"))
    }


def sql(name: str, sql_dir: Path | None = None) -> str:
    """Return the text of sql/<name>.sql; KeyError names what exists."""
    queries = _load_all(sql_dir or default_sql_dir())
    try:
        return queries[name]
    except KeyError:
        raise KeyError(f"no sql/{name}.sql (have: {', '.join(sorted(queries))})") from None


def names(sql_dir: Path | None = None) -> list[str]:
    return sorted(_load_all(sql_dir or default_sql_dir()))
