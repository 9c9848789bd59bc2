"""Where pnl's SQL and migrations are: inside the installed package.

The checkout keeps them at the top (sql/, migrations/: the layout is the
user's); the wheel carries them as pnl/sql and pnl/migrations (see
pyproject.toml), read here through importlib.resources. A checkout without an
install (python cli.py, or an editable install) reads them from the checkout.
A missing or empty set is an error, never "nothing to do".
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from pnl.errors import PnlError

_CHECKOUT = Path(__file__).resolve().parent.parent


@cache
def _resource_dir(name: str, pattern: str) -> Path:
    packaged = files("pnl") / name
    if packaged.is_dir():
        found = Path(str(packaged))
    elif (_CHECKOUT / name).is_dir() and (_CHECKOUT / "pyproject.toml").is_file():
        found = _CHECKOUT / name
    else:
        raise PnlError(f"this pnl installation has no {name}/ files (looked in {packaged} and {_CHECKOUT / name}): "
                       "reinstall it from a wheel built with `pip wheel .` or `python -m build`")
    if not any(found.glob(pattern)):
        raise PnlError(f"this pnl installation's {name}/ files are missing or unreadable ({found} holds no "
                       f"{pattern}): reinstall pnl")
    return found


def sql_dir() -> Path:
    """The directory of hand-written SQL (sql/ in the checkout)."""
    return _resource_dir("sql", "**/*.sql")


def migrations_dir() -> Path:
    """The directory of yoyo migrations (migrations/ in the checkout)."""
    return _resource_dir("migrations", "*.sql")
