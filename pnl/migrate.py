"""Schema migrations through yoyo's Python API (sync, psycopg 3 driver).

The migration files in migrations/ are the DBA-readable source of truth; this
module applies them in order, stops at the first refusal with the migration's
own message (for example the duplicate-snapshot pre-check), and tells every
other command whether the schema is current.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from pnl.db import PRIVILEGE_SQLSTATE, ROLES, redact, role_for, scrub, sqlstate_of, translate_db_error, yoyo_uri
from pnl.errors import (
    BadInput,
    DatabaseUnavailable,
    MigrationRefused,
    PnlError,
    PrivilegeMissing,
    SchemaNotReady,
)
from pnl.queries import sql
from pnl.resources import migrations_dir

if TYPE_CHECKING:  # yoyo and psycopg load only when a migration is applied or rolled back:
    import psycopg  # every other command only compares file names with _yoyo_migration
    from yoyo.backends.base import DatabaseBackend
    from yoyo.migrations import Migration, MigrationList

BASELINE_ID = "0001_baseline"
LOCK_TIMEOUT_S = 30

logging.getLogger("yoyo").setLevel(logging.WARNING)


@dataclass(frozen=True)
class MigrationState:
    id: str
    applied: bool
    applied_at: datetime | None = None


def all_migrations() -> MigrationList:
    """yoyo's view of the migrations; an empty set is an error, never "schema current"."""
    from yoyo import read_migrations

    folder = migrations_dir()
    migrations = read_migrations(str(folder))
    if not len(migrations):
        raise PnlError(f"no migrations could be read from {folder}: this pnl installation is incomplete")
    return migrations


def migration_ids() -> list[str]:
    """The migrations' ids in the order they apply, from the file names alone
    (ids sort in dependency order; a test checks this against yoyo's order)."""
    ids = sorted(p.name.removesuffix(".sql") for p in migrations_dir().glob("*.sql")
                 if not p.name.endswith(".rollback.sql"))
    if not ids:
        raise PnlError(f"no migrations in {migrations_dir()}: this pnl installation is incomplete")
    return ids


def resolve_id(target: str) -> str:
    """A full migration id from an id or a unique prefix of one ("0003")."""
    ids = migration_ids()
    if target in ids:
        return target
    matches = [i for i in ids if i.startswith(target)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(ids)
    if not matches:
        raise BadInput(f"no migration {target!r}; known: {known}")
    raise BadInput(f"{target!r} is ambiguous: {', '.join(matches)}")


def _cannot_connect(dsn: str, exc: Exception) -> DatabaseUnavailable:
    text = str(exc).strip()
    reason = text.splitlines()[-1] if text else type(exc).__name__
    return DatabaseUnavailable(f"cannot connect to {redact(dsn)}: {scrub(reason, dsn)}")


def _backend(dsn: str) -> DatabaseBackend:
    """yoyo's backend. Creating it creates yoyo's own tables: only for a real apply/rollback."""
    from yoyo import get_backend

    try:
        return get_backend(yoyo_uri(dsn))
    except Exception as exc:  # psycopg, yoyo's URI parser: one line, never the DSN
        raise _cannot_connect(dsn, exc) from None


def _has_history(dsn: str) -> bool:
    """Whether yoyo has ever migrated this database (asked without creating anything)."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(sql("schema/migration_history_exists")).fetchone()
    except psycopg.OperationalError as exc:
        raise _cannot_connect(dsn, exc) from None
    return bool(row and row[0])


def _require_privileges(backend: DatabaseBackend, command: str) -> None:
    """One line naming what is missing, before yoyo's lock (which would retry
    a permission error until its timeout)."""
    with backend.connection.cursor() as cur:
        cur.execute(sql("schema/missing_migration_privileges"))
        missing = [row[0] for row in cur.fetchall()]
    backend.connection.rollback()
    if missing:
        role = role_for(command)
        raise PrivilegeMissing(f"missing privilege: {'; '.join(missing)}; `pnl {command}` needs the {role} role: "
                               f"connect as {ROLES[role]} (sql/roles/create_roles.sql creates it)")


def _refusal(migration_id: str, exc: psycopg.Error) -> MigrationRefused:
    diag = exc.diag
    parts = [f"migration {migration_id} refused: {diag.message_primary or str(exc).strip()}"]
    if diag.message_detail:
        parts.append(diag.message_detail)
    if diag.message_hint:
        parts.append(diag.message_hint)
    return MigrationRefused("\n".join(parts))


def _each(dsn: str, pick: Callable[[DatabaseBackend, MigrationList], list[Migration]], step: str,
          prepare: Callable[[DatabaseBackend, MigrationList], None] | None = None) -> list[str]:
    """Under yoyo's lock, run backend.<step> (apply_one / rollback_one) on each
    migration `pick` selects, in its order; the first refusal stops it."""
    import psycopg
    from yoyo.exceptions import LockTimeout

    command = "migrate" if step == "apply_one" else "rollback"
    migrations = all_migrations()
    backend = _backend(dsn)
    done: list[str] = []
    try:
        _require_privileges(backend, command)
        with backend.lock(timeout=LOCK_TIMEOUT_S):
            if prepare:
                prepare(backend, migrations)
            for migration in pick(backend, migrations):
                try:
                    getattr(backend, step)(migration)
                except psycopg.Error as exc:
                    if sqlstate_of(exc) == PRIVILEGE_SQLSTATE:
                        raise translate_db_error(exc, command, dsn=dsn) from None
                    raise _refusal(migration.id, exc) from None
                done.append(migration.id)
    except LockTimeout as exc:
        raise PnlError(f"another `pnl {command}` holds the migration lock ({exc}); try again when it is done, "
                       "or remove a stale lock with `DELETE FROM yoyo_lock`") from None
    except psycopg.Error as exc:
        raise translate_db_error(exc, command, dsn=dsn) from None
    finally:
        backend.connection.close()
    return done


def apply(dsn: str, to: str | None = None, baseline: bool = False) -> list[str]:
    """Apply pending migrations in order, up to and including `to`.

    With baseline=True the baseline migration is only marked as applied (for a
    legacy database that already has those tables). Returns the ids applied.
    """
    order = migration_ids()
    last = order.index(resolve_id(to)) if to else len(order) - 1
    return _each(dsn, lambda backend, ms: [m for m in backend.to_apply(ms) if order.index(m.id) <= last],
                 "apply_one", prepare=_mark_baseline if baseline else None)


def _mark_baseline(backend: DatabaseBackend, migrations: MigrationList) -> None:
    from yoyo.migrations import MigrationList

    baseline = next(m for m in migrations if m.id == BASELINE_ID)
    if backend.is_applied(baseline):
        return
    present = backend.execute(sql("schema/legacy_tables_exist")).fetchone()[0]
    if not present:
        raise BadInput(
            "--baseline adopts a database that already has the legacy tables, "
            "but portfolio_snapshots does not exist here: run `pnl migrate` without --baseline"
        )
    backend.mark_migrations(MigrationList([baseline]))


def rollback(dsn: str, to: str | None) -> list[str]:
    """Roll back the applied migrations that come after `to` (all if None), newest first.
    On a database yoyo never migrated there is nothing to roll back, and nothing is created."""
    order = migration_ids()
    keep_through = order.index(resolve_id(to)) if to else -1
    if not _has_history(dsn):
        return []
    return _each(dsn, lambda backend, ms: [m for m in backend.to_rollback(ms) if order.index(m.id) > keep_through],
                 "rollback_one")


async def states(conn: asyncpg.Connection) -> list[MigrationState]:
    """Every migration on disk, with whether (and when) it is applied here."""
    applied: dict[str, datetime] = {}
    if await conn.fetchval(sql("schema/migration_history_exists")):
        applied = {r["migration_id"]: r["applied_at_utc"] for r in await conn.fetch(sql("schema/applied_migrations"))}
    return [MigrationState(i, i in applied, applied.get(i)) for i in migration_ids()]


async def require_current(conn: asyncpg.Connection) -> None:
    """Raise SchemaNotReady unless every migration on disk is applied."""
    pending = [s.id for s in await states(conn) if not s.applied]
    if pending:
        raise SchemaNotReady(
            f"the database schema is not current: {len(pending)} pending migration(s) "
            f"({', '.join(pending)}); run `pnl migrate` first"
        )
