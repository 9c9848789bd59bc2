"""sql/schema.sql, the readable schema, is exactly what the migrations build."""

from __future__ import annotations

from pnl.resources import sql_dir
from tests.conftest import Db
from tests.test_migrations import fingerprint


def test_schema_sql_matches_the_migrations(db: Db, empty_db: Db) -> None:
    empty_db.execute((sql_dir() / "schema.sql").read_text())
    from_file, from_migrations = fingerprint(empty_db), fingerprint(db)
    for part in ("columns", "constraints", "indexes", "storage"):
        assert from_file[part] == from_migrations[part], part
