"""Connections, in one place: DSN handling, pool creation, error translation.

Credentials never leave this module in a message: every error names the
database by `redact(dsn)`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from pnl.errors import BadInput, DatabaseUnavailable, PnlError, PrivilegeMissing
from pnl.queries import sql

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DbSettings:
    dsn: str
    statement_timeout_ms: int = 300_000
    application_name: str = "pnl"


# ---------------------------------------------------------------- DSNs and secrets
# One place decides what a DSN is, how it is shown (redact) and how any text
# that might echo it is cleaned (scrub). Every output path of pnl goes through
# these two: status, errors, --json, batch_runs failure reasons, logs.

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# password=..., sslpassword=..., PGPASSWORD=..., 'password': '...': in a URL query
# (value up to the next &key=), a keyword/value string (quoted or up to a blank),
# or a driver's repr of its parameters.
_SECRET_PARAM = re.compile(
    r"""(?i)(?<![A-Za-z0-9_])((?:ssl|pg)?password['"]?)(\s*[=:]\s*)"""
    r"""('(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|(?:[^\s&,)]|&(?![A-Za-z_][A-Za-z0-9_]*=))*)"""
)
# In a DSN whose structure is known, a password value runs further than in free
# text: in a keyword/value string to the next blank (a backslash escapes one
# character), in a URL query to the next & (its key percent-decoded, as the
# drivers decode it). A ',' or ')' in a password is part of it there.
_PASSWORD_KEYS = frozenset({"password", "sslpassword"})
_KEYWORD_SECRET = re.compile(
    r"""(?i)(?<![A-Za-z0-9_])((?:ssl)?password)(\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)*\\?)"""
)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
MIN_SECRET_LEN = 4  # shorter fragments are not searched for in free text (they would garble it)

# The keyword/value keys pnl accepts: what asyncpg understands, plus application_name,
# and two of libpq's that asyncpg does not (a URL's unknown query fields become server
# settings there, so `?connect_timeout=10` failed every statement): connect_timeout
# and options, translated for asyncpg by asyncpg_connect_args.
KEYWORDS = frozenset({
    "host", "port", "user", "password", "dbname", "passfile", "service", "servicefile", "application_name",
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs", "krbsrvname", "gsslib",
    "connect_timeout", "options",
})
# libpq keywords asyncpg has no equivalent for: refused by name (exit 2), not ignored
LIBPQ_UNSUPPORTED = frozenset({
    "hostaddr", "client_encoding", "fallback_application_name", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "replication", "gssencmode",
    "channel_binding", "requirepeer", "require_auth", "sslcompression", "sslsni", "sslcertmode",
    "gssdelegation", "load_balance_hosts", "requiressl",
})
SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_DSN_HELP = ("percent-encode @ / ? # % in the user name and password (%40 %2F %3F %23 %25), or keep the "
             "password out of the DSN: a PGPASSFILE (~/.pgpass) line or PGPASSWORD")


def is_url(dsn: str) -> bool:
    return bool(_SCHEME.match(dsn.strip()))


def check_dsn(dsn: str | None) -> str:
    """Validate a DSN given by --dsn or DATABASE_URL and return it as a
    postgresql:// URL (a keyword/value string `host=... dbname=...` is converted).
    Raises BadInput, whose message never contains any part of the DSN."""
    if not dsn or not dsn.strip():
        raise BadInput(
            "no database: pass --dsn postgresql://USER@HOST:PORT/DB, set DATABASE_URL, "
            "or choose the local embedded PostgreSQL with --embedded (PNL_EMBEDDED=1)"
        )
    dsn = dsn.strip()
    if is_url(dsn):
        scheme = dsn.split("://", 1)[0]
        if scheme.lower() not in ("postgresql", "postgres"):
            raise BadInput(f"the DSN (--dsn / DATABASE_URL) must be a postgresql:// URL or a keyword/value "
                           f"string (host=... dbname=...), not a {scheme[:20]}:// URL")
        problem = _url_problem(dsn)
        if problem:
            raise BadInput(f"the DSN (--dsn / DATABASE_URL) is not a usable postgresql:// URL: {problem}; "
                           f"{_DSN_HELP}")
        for raw_key, raw_value in _query_fields(dsn.split("://", 1)[1]):
            key = unquote(raw_key).strip()
            if key in LIBPQ_UNSUPPORTED:    # asyncpg would send it to the server as a setting
                raise BadInput(f"the DSN (--dsn / DATABASE_URL) has libpq's {key!r}, which pnl's driver does "
                               f"not support; remove it")
            problem = _param_problem(key, unquote(raw_value))
            if problem:
                raise BadInput(f"the DSN (--dsn / DATABASE_URL) is not a usable postgresql:// URL: {problem}")
        return dsn
    if "=" in dsn:
        return keyword_dsn_to_url(parse_keyword_dsn(dsn))
    raise BadInput("the DSN (--dsn / DATABASE_URL) is neither a postgresql:// URL nor a keyword/value string "
                   "(host=... dbname=...)")


def _url_problem(dsn: str) -> str | None:
    """Why a URL cannot mean what its writer meant (None: fine). libpq and asyncpg
    cut the user info at the first @, /, ? or #, so an unencoded one of those in
    a password silently turns the rest into a port, a database or a query."""
    try:
        urlsplit(dsn)
    except ValueError:
        return "it cannot be parsed as a URL"
    rest = dsn.split("://", 1)[1]
    if "#" in rest:
        return "it contains a '#'"
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    if authority.count("@") > 1:
        return "it has more than one '@' before the host"
    for hostport in authority.rsplit("@", 1)[-1].split(","):
        if hostport.startswith("["):
            if "]" not in hostport:
                return "an IPv6 host has no closing ']'"
            port = hostport.split("]", 1)[1].removeprefix(":")
        else:
            port = hostport.partition(":")[2]
        if port and not (port.isascii() and port.isdigit()):
            return "a port is not a number"
    path, _, query = rest[len(authority):].partition("?")
    if path.count("/") > 1 or "@" in path:
        return "the database name contains '/' or '@'"
    if query and any("=" not in field for field in query.split("&")):
        return "a query parameter has no '='"
    if "@" in query and "@" not in authority:
        return "an '@' after the host"
    return None


def _param_problem(key: str, value: str) -> str | None:
    """Why a connection parameter's value cannot work (None: fine). Names the
    parameter, never quotes a value (only these non-secret ones are checked)."""
    if key == "connect_timeout" and not re.fullmatch(r"\s*-?\d+\s*", value):
        return "connect_timeout is not a whole number of seconds"
    if key == "sslmode" and value not in SSLMODES:
        return f"sslmode must be one of {', '.join(SSLMODES)}"
    if key == "port" and not all(p.strip().isascii() and p.strip().isdigit() and 0 < int(p) < 65536
                                 for p in value.split(",")):
        return "a port is not a number from 1 to 65535"
    if key == "target_session_attrs" and value not in SESSION_ATTRS:
        return f"target_session_attrs must be one of {', '.join(SESSION_ATTRS)}"
    if key == "options":
        try:
            libpq_options(value)
        except ValueError as exc:
            return f"options: {exc}"
    return None


def libpq_options(value: str) -> dict[str, str]:
    """libpq's `options` (`-c name=value`, `-cname=value`, `--name=value`, a
    backslash escaping a blank) as server settings; ValueError for anything else."""
    tokens, word, escaped = [], [], False
    for c in value + " ":
        if escaped:
            word.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c.isspace():
            if word:
                tokens.append("".join(word))
                word = []
        else:
            word.append(c)
    settings: dict[str, str] = {}
    it = iter(tokens)
    for token in it:
        if token == "-c":
            token = next(it, "")
        elif token.startswith("-c"):
            token = token[2:]
        elif token.startswith("--"):
            token = token[2:].replace("-", "_")
        else:
            raise ValueError("only -c name=value settings are supported")
        name, eq, setting = token.partition("=")
        if not eq or not _KEYWORD.fullmatch(name.replace(".", "_")):
            raise ValueError("each -c needs name=value")
        settings[name] = setting
    return settings


def asyncpg_connect_args(dsn: str) -> tuple[str, float | None, dict[str, str]]:
    """The URL asyncpg is given, without the libpq-only fields it would send to the
    server as settings, and what they mean for it: (url, connect timeout in seconds
    (None: no limit), server settings from `options`). libpq's rules: connect_timeout
    is whole seconds, at least 2, and 0 or less means no limit; absent, pnl's default."""
    head = dsn.partition("?")[0]
    timeout: float | None = CONNECT_TIMEOUT_S
    settings: dict[str, str] = {}
    kept = []
    for raw_key, raw_value in _query_fields(dsn):    # check_dsn refused a field without '='
        key, value = unquote(raw_key).strip(), unquote(raw_value)
        if key == "connect_timeout":
            seconds = int(value)
            timeout = float(max(seconds, 2)) if seconds > 0 else None
        elif key == "options":
            settings.update(libpq_options(value))
        else:
            kept.append(f"{raw_key}={raw_value}")
    return head + ("?" + "&".join(kept) if kept else ""), timeout, settings


def _userinfo(url: str) -> str | None:
    """The user info of a URL (without the scheme), or None. A well-formed URL
    is split as the drivers split it; a malformed one at its LAST @, so that a
    password with an unencoded @ / ? # is treated as a password whole."""
    rest = url.strip().split("://", 1)[1]
    if _url_problem(url) is None:
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        return authority.rpartition("@")[0] if "@" in authority else None
    at = rest.rfind("@")
    return rest[:at] if at >= 0 else None


def parse_keyword_dsn(dsn: str) -> dict[str, str]:
    """A libpq keyword/value string (`host=db port=5432 password='a b\\'c'`) as a
    dict. Errors never quote the string (it may hold a password)."""
    def fail(why: str) -> BadInput:
        return BadInput(f"the DSN (--dsn / DATABASE_URL) is not a valid keyword/value string: {why}")

    out: dict[str, str] = {}
    i, n = 0, len(dsn)
    while True:
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n:
            break
        m = _KEYWORD.match(dsn, i)
        if not m:
            raise fail(f"a keyword must start with a letter (at character {i + 1})")
        key, i = m.group(), m.end()
        known = key if key in KEYWORDS else "a keyword"
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n or dsn[i] != "=":
            raise fail(f"missing '=' after {known}")
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        value: list[str] = []
        quoted = i < n and dsn[i] == "'"
        i += quoted
        while True:
            if i >= n:
                if quoted:
                    raise fail(f"the quoted value of {known} has no closing quote")
                break
            c = dsn[i]
            if c == "\\" and i + 1 < n:
                value.append(dsn[i + 1])
                i += 2
                continue
            if (quoted and c == "'") or (not quoted and c.isspace()):
                i += 1
                break
            value.append(c)
            i += 1
        if key not in KEYWORDS:
            # named only when it is one of libpq's: an unknown word may be a piece of a
            # password with a blank in it (password=abc def=ghi)
            what = (f"libpq's {key!r} is not supported by pnl's driver" if key in LIBPQ_UNSUPPORTED
                    else "unknown keyword")
            raise fail(f"{what} (accepted: {', '.join(sorted(KEYWORDS))})")
        out[key] = "".join(value)
        problem = _param_problem(key, out[key])
        if problem:
            raise fail(problem)
    if not out:
        raise fail("it is empty")
    return out


def keyword_dsn_to_url(params: dict[str, str]) -> str:
    """The same connection as a postgresql:// URL (asyncpg takes only URLs)."""
    rest = dict(params)
    user, password = rest.pop("user", None), rest.pop("password", None)
    userinfo = ""
    if user is not None:
        userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "") + "@"
    elif password is not None:
        rest["password"] = password
    host, port = rest.get("host", ""), rest.get("port", "")
    netloc = ""
    if host and not any(c in host for c in "/,") and "," not in port:
        rest.pop("host")
        netloc = f"[{host}]" if ":" in host else quote(host, safe=".-_~")
        if port:
            rest.pop("port")
            netloc += f":{quote(port, safe='')}"
    path = "/" + quote(rest.pop("dbname"), safe="") if "dbname" in rest else ""
    query = urlencode(rest, quote_via=quote, safe="/") if rest else ""
    return f"postgresql://{userinfo}{netloc}{path}" + (f"?{query}" if query else "")


def _mask_params(text: str) -> str:
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def _query_fields(rest: str) -> list[tuple[str, str]]:
    """(raw key, raw value) of each field of a URL's query (everything after
    its first ?, a '#' included: masking too much is the safe side)."""
    query = rest.partition("?")[2]
    return [(k, v) for k, eq, v in (f.partition("=") for f in query.split("&")) if eq]


def _is_password_key(raw_key: str) -> bool:
    return unquote(raw_key).strip().lower() in _PASSWORD_KEYS


def _mask_query(rest: str) -> str:
    head, sep, query = rest.partition("?")
    if not sep:
        return rest
    fields = []
    for field in query.split("&"):
        key, eq, _ = field.partition("=")
        fields.append(f"{key}=***" if eq and _is_password_key(key) else field)
    return head + sep + "&".join(fields)


def redact(dsn: str) -> str:
    """The DSN with every password replaced by ***: safe to print or log.

    Any form: URL user info (cut at the LAST @ before the host, so an unencoded
    @ / ? # in the password is masked whole), ?password= and sslpassword=
    parameters, keyword/value strings with quoted values."""
    if is_url(dsn):
        head = _SCHEME.match(dsn.strip())
        assert head is not None
        rest = dsn.strip()[head.end():]
        userinfo = _userinfo(dsn)
        if userinfo is not None and ":" in userinfo:
            rest = f"{userinfo.partition(':')[0]}:***{rest[len(userinfo):]}"
        return head.group() + _mask_params(_mask_query(rest))
    return _mask_params(_KEYWORD_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", dsn))


def _secrets_of(dsn: str) -> set[str]:
    """Every string that is (or is a piece of) a password in this DSN."""
    found: set[str] = set()
    text = dsn.strip()
    if is_url(text):
        userinfo = _userinfo(text)
        if userinfo is not None and ":" in userinfo:
            found.add(userinfo.partition(":")[2])
        found.update(v for k, v in _query_fields(text) if _is_password_key(k))
    else:
        found.update(m.group(3).strip("'") for m in _KEYWORD_SECRET.finditer(text))
        with suppress(BadInput):
            params = parse_keyword_dsn(text)
            found.update(v for k, v in params.items() if k in ("password", "sslpassword"))
    for m in _SECRET_PARAM.finditer(text):
        found.add(m.group(3).strip("'\""))
    for s in list(found):
        found.add(unquote(s))
        found.add(quote(s, safe=""))
        # where a parser may cut it: the pieces between URL delimiters
        found.update(re.split(r"[@/?#&:%\s'\"\\]", s))
    return {s for s in found if len(s) >= MIN_SECRET_LEN}


def scrub(text: str, *dsns: str | None, secrets: tuple[str | None, ...] = ()) -> str:
    """`text` with the DSNs (whole: shown redacted), their passwords and any
    other secret removed; also masks anything in it that looks like a URL with
    a password or a password=... parameter. For every message pnl shows."""
    for dsn in (d for d in dsns if d and d.strip()):
        text = text.replace(dsn.strip(), redact(dsn))
    everything = {s for d in dsns if d for s in _secrets_of(d)}
    everything |= {s for s in secrets if s and len(s) >= MIN_SECRET_LEN}
    for secret in sorted(everything, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_IN_TEXT.sub(lambda m: redact(m.group()), text)
    return _mask_params(text)


class ScrubbingFormatter(logging.Formatter):
    """A log formatter that scrubs every record (drivers and yoyo log too)."""

    def __init__(self, dsns: tuple[str | None, ...], secrets: tuple[str | None, ...], fmt: str) -> None:
        super().__init__(fmt)
        self.dsns, self.secrets = dsns, secrets

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), *self.dsns, secrets=self.secrets)

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        """A logged exception (a driver's background task, asyncio's "never
        retrieved") as one line: never a traceback on a user's terminal."""
        exc = ei[1] if ei and len(ei) > 1 else None
        return f"  ({type(exc).__name__}: {first_line(exc)})" if exc is not None else ""


# ---------------------------------------------------------------- roles and privileges
# sql/roles/create_roles.sql creates these (its psql variables can rename them).
PRIVILEGE_SQLSTATE = "42501"
ROLES = {"owner": "pnl_owner", "batch": "pnl_batch", "readonly": "pnl_readonly"}
COMMAND_ROLES = {
    "migrate": "owner", "rollback": "owner", "seed": "owner", "dedupe": "owner", "repair": "owner",
    "demo": "owner", "batch run": "batch", "batch backfill": "batch", "batch undo": "batch", "cleanup": "batch",
    "status": "readonly", "verify": "readonly",
}


def role_for(command: str, dry_run: bool = False) -> str:
    """Which of the three roles a command needs (every --dry-run: readonly)."""
    return "readonly" if dry_run else COMMAND_ROLES.get(command, "owner")


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of an asyncpg or psycopg error (None for anything else)."""
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate_db_error(exc: BaseException, command: str | None = None, dry_run: bool = False,
                       dsn: str | None = None) -> PnlError:
    """The one-line domain error for a driver error (asyncpg or psycopg), keyed
    on SQLSTATE; never a credential in it. 42501 names the missing privilege
    and the role to connect as."""
    message = scrub(first_line(exc), dsn)
    if sqlstate_of(exc) == PRIVILEGE_SQLSTATE:
        role = role_for(command or "", dry_run)
        what = f"`pnl {command}{' --dry-run' if dry_run else ''}`" if command else "this command"
        return PrivilegeMissing(
            f"missing privilege: {message}; {what} needs the {role} role's privileges: connect as "
            f"{ROLES[role]} (or a member of it; sql/roles/create_roles.sql creates it, and re-running it as the "
            "owner after a migration grants the tables the migration added)")
    return PnlError(f"database error: {message}")


# ---------------------------------------------------------------- dry runs without write privileges
DRY_RUN_TABLES = ("portfolio_snapshots", "portfolios", "batch_runs", "rescue_runs", "snapshot_dedupe_audit",
                  "snapshot_repair_audit", "snapshot_undo_audit", "valuation_marks", "valuation_mark_repair_audit")


@asynccontextmanager
async def planned_transaction(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction whose statements are planned as pnl's statements on the
    snapshots need (sql/batch/plan_chunk_statements.sql, SET LOCAL: index paths
    whatever the statistics say; they end with the transaction)."""
    async with conn.transaction():
        await conn.execute(sql("batch/plan_chunk_statements"))
        yield


async def use_dry_run_copies(conn: asyncpg.Connection, fill: str, *args: object,
                             also: tuple[tuple[str, tuple[object, ...]], ...] = ()) -> None:
    """Inside the caller's transaction, which it must roll back: each table a
    rescue writes is shadowed by a session-private temporary copy holding only
    the rows the sql/ statement `fill` (and each of `also`) copies (identity continuing after the
    real ids). The dry run then executes the very statements of the real run
    on the copies, so it shows exactly what would happen and needs only SELECT
    and TEMPORARY (the read-only role). The copies vanish with the transaction."""
    present = []
    for table in DRY_RUN_TABLES:
        ddl = await conn.fetchval(sql("dryrun/create_copy"), table)
        if ddl:
            id_query = await conn.fetchval(sql("dryrun/next_id_query"), table)
            next_id = await conn.fetchval(id_query) if id_query else None
            await conn.execute(ddl)
            if next_id is not None:
                await conn.fetchval(sql("dryrun/restart_copy_ids"), table, next_id)
            present.append(table)
    await conn.execute(sql(fill), *args)
    for more, more_args in also:           # further fills (`also`), in order
        await conn.execute(sql(more), *more_args)
    for table in present:
        await conn.execute(await conn.fetchval(sql("dryrun/shadow_with_copy"), table))


def yoyo_uri(dsn: str) -> str:
    """yoyo names its psycopg 3 backend by URL scheme."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def describe_connect_error(exc: BaseException, timeout: float | None = CONNECT_TIMEOUT_S) -> str:
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
        return f"no answer within {timeout:.0f}s" if timeout else "no answer"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# ---------------------------------------------------------------- faults
# SQLSTATEs that mean "the connection (or the server) is gone", not "this
# statement failed": class 08 (connection exception), 57P01 admin shutdown
# (fast shutdown, pg_terminate_backend), 57P02 crash shutdown (immediate
# shutdown, a backend crash), 57P03 cannot connect now (starting up,
# shutting down, in recovery).
_CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
# Faults of the connection itself, not of a statement: the socket broke, or the
# driver's state machine lost track (InternalClientError: "cannot switch to
# state 15; another operation (2) is in progress" after a shutdown message).
CONNECTION_FAULTS: tuple[type[BaseException], ...] = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


def is_connection_fault(exc: BaseException) -> bool:
    """True when `exc` says the connection or the server went away (worth a
    reconnect), False when a statement failed on a live connection."""
    if isinstance(exc, CONNECTION_FAULTS):
        return True
    state = sqlstate_of(exc)
    return state is not None and (state.startswith("08") or state in _CONNECTION_SQLSTATES)


def is_data_error(exc: BaseException) -> bool:
    """True for the errors a row's data causes (class 22 data exception:
    numeric overflow 22003, division by zero 22012, ...; class 23 integrity
    constraint violation: a check 23514, ...): the same statement over other
    rows may succeed."""
    state = sqlstate_of(exc)
    return state is not None and state[:2] in ("22", "23")


class Pool(asyncpg.Pool):
    """asyncpg's pool, except that giving back a connection never raises.

    After a server restart a connection can come back mid-protocol (the
    server's shutdown message arrived, the socket's close not yet): asyncpg's
    release then fails resetting it (InternalClientError, InterfaceError,
    OSError) after having terminated it, and that error would replace the
    one that matters (the statement's). The connection is gone either way;
    the pool opens a new one on the next acquire."""

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncpg's signature)
        try:
            await super().release(connection, timeout=timeout)
        except (*CONNECTION_FAULTS, asyncpg.PostgresError):
            with suppress(Exception):
                connection.terminate()


POOL_CLOSE_TIMEOUT_S = 10.0


@asynccontextmanager
async def connect_pool(settings: DbSettings, max_size: int = 2) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool (see Pool); connection failures become DatabaseUnavailable.

    min_size 0: asyncpg >= 0.32 keeps a floor of min_size connections with a
    background task that logs every failed attempt while the server is away;
    connections are opened on demand instead, and the first one here, so that
    a wrong DSN fails now, with one line."""
    dsn, timeout, user_settings = asyncpg_connect_args(settings.dsn)
    pool = Pool(
        dsn,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=0,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        setup=None,
        init=None,
        loop=None,
        timeout=timeout,
        command_timeout=None,
        server_settings={
            # the DSN's options (-c name=value) first: pnl's own settings below win
            **user_settings,
            # the process, for a DBA and for pnl itself (sql/runs/connected_processes.sql)
            "application_name": f"{settings.application_name}/{os.getpid()}",
            "statement_timeout": str(settings.statement_timeout_ms),
            "lock_timeout": "30000",
            # Every statement here is a big set-based one whose plan depends on the
            # size of the bound arrays: plan each execution with its real values.
            "plan_cache_mode": "force_custom_plan",
            # Per-chunk statements run in milliseconds; compiling them costs more.
            "jit": "off",
        },
    )
    try:
        await pool
        async with pool.acquire():
            pass
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        pool.terminate()
        raise DatabaseUnavailable(
            f"cannot connect to {redact(settings.dsn)}: "
            f"{scrub(describe_connect_error(exc, timeout), settings.dsn)}"
        ) from None
    try:
        yield pool
    finally:
        # Closing politely needs the server; one that went away gets the socket closed.
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
        except Exception:
            pool.terminate()
