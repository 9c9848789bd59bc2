"""Domain errors. Everything below cli.py raises these; cli.py maps them to
one line on stderr and an exit code. Messages never contain credentials."""


class PnlError(Exception):
    """An operational failure the user can act on (exit code 1)."""


class DatabaseUnavailable(PnlError):
    """The database cannot be reached or refused our credentials."""


class SchemaNotReady(PnlError):
    """Migrations are pending: the command would run against the wrong schema."""


class MigrationRefused(PnlError):
    """A migration refused to run (for example the duplicate pre-check)."""


class RetryLater(PnlError):
    """Nothing was done, and a later attempt may succeed (exit code 75, EX_TEMPFAIL)."""


class BadInput(PnlError):
    """The request names something that does not exist (exit code 2)."""


class PrivilegeMissing(PnlError):
    """The database role lacks a privilege the command needs (SQLSTATE 42501)."""
