"""Connections, in one place: DSN handling, pool creation, error translation.

Credentials never leave this module in a message: every error names the
database by `redact(dsn)`.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pnl.errors import BadInput, DatabaseUnavailable

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DbSettings:
    dsn: str
    statement_timeout_ms: int = 300_000
    application_name: str = "pnl"


def check_dsn(dsn: str | None) -> str:
    """Validate a DSN given by --dsn or DATABASE_URL; raise BadInput if unusable."""
    if not dsn:
        raise BadInput(
            "no database: pass --dsn postgresql://USER@HOST:PORT/DB, set DATABASE_URL, "
            "or choose the local embedded PostgreSQL with --embedded (PNL_EMBEDDED=1)"
        )
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise BadInput(
            f"--dsn must be a postgresql:// URL, got {redact(dsn)!r}"
        )
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number 0..65535)
    except ValueError:
        raise BadInput(f"the port in --dsn must be a number from 1 to 65535, got {redact(dsn)!r}") from None
    return dsn


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ***: safe to print or log."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable dsn>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


_URL_PASSWORD = re.compile(r"(?P<head>\bpostgres(?:ql)?(?:\+\w+)?://[^:/@\s]*:)(?P<password>[^@\s]*)@")
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Any message with every password in it masked: the one function every
    error message passes through before it is shown (cli.py's error mapping)."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", text)
    return _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + "***", text)


def yoyo_uri(dsn: str) -> str:
    """yoyo names its psycopg 3 backend by URL scheme."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def describe_connect_error(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return "authentication failed (wrong user or password)"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return f"not authorized: {exc}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"{exc}"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is PostgreSQL running and listening there?)"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer within {CONNECT_TIMEOUT_S:.0f}s"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@asynccontextmanager
async def connect_pool(settings: DbSettings, max_size: int = 2) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool; connection failures become DatabaseUnavailable."""
    try:
        pool = await asyncpg.create_pool(
            settings.dsn,
            min_size=1,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=None,
            server_settings={
                "application_name": settings.application_name,
                "statement_timeout": str(settings.statement_timeout_ms),
                "lock_timeout": "30000",
                # Every statement here is a big set-based one whose plan depends on the
                # size of the bound arrays: plan each execution with its real values.
                "plan_cache_mode": "force_custom_plan",
                # Per-chunk statements run in milliseconds; compiling them costs more.
                "jit": "off",
            },
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {redact(settings.dsn)}: {describe_connect_error(exc)}"
        ) from None
    try:
        yield pool
    finally:
        await pool.close()
