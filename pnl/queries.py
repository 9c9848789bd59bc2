"""The hand-written SQL in sql/, loaded once, by name ("batch/claim_slots").

A line `-- @include NAME` in a file stands for the whole text of sql/NAME.sql
(a shared part of several statements, such as the P&L rule in
batch/snapshot_values.sql): one rule, written once, in every statement that
applies it."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pnl.errors import PnlError
from pnl.resources import sql_dir as default_sql_dir

INCLUDE = re.compile(r"^-- @include (\S+)[ \t]*$", re.MULTILINE)


@cache
def _load_all(sql_dir: Path) -> dict[str, str]:
    raw = {
        path.relative_to(sql_dir).with_suffix("").as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(sql_dir.rglob("*.sql"))
    }

    def expand(name: str, seen: tuple[str, ...]) -> str:
        def one(match: re.Match[str]) -> str:
            part = match.group(1)
            if part not in raw or part in seen:
                why = "missing" if part not in raw else "included in itself"
                raise PnlError(f"{name}.sql includes {part}.sql ({why}) in {sql_dir}: reinstall pnl")
            return expand(part, (*seen, part)).rstrip("\n")
        return INCLUDE.sub(one, raw[name])

    return {name: expand(name, (name,)) for name in raw}


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
