"""A private PostgreSQL server in a directory: initdb, start, stop.

Used by the test suite (and by anything that needs a throwaway server). It runs
the machine's PostgreSQL binaries; PostgreSQL refuses to run as root, so when
we are root the server runs as an unprivileged account (`postgres` if it
exists, else `nobody`) through runuser, and owns its data directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pnl.errors import PnlError

TOOLS = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres: $PNL_PG_BINDIR, else the
    newest /usr/lib/postgresql/*/bin, else whatever is on PATH."""
    env = os.environ.get("PNL_PG_BINDIR", "").strip()
    if env:
        chosen = Path(env)
        if all((chosen / tool).is_file() for tool in TOOLS):
            return chosen
        raise PnlError(f"PNL_PG_BINDIR={env[:200]!r} does not hold the PostgreSQL server binaries "
                       f"({', '.join(TOOLS)}): point it at a directory like /usr/lib/postgresql/15/bin, or unset it")
    candidates: list[Path] = []
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [Path(p) for p in versions]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for c in candidates:
        if all((c / tool).is_file() for tool in TOOLS):
            return c
    raise PnlError(
        "no PostgreSQL server binaries found (looked in $PNL_PG_BINDIR, /usr/lib/postgresql/*/bin, PATH); "
        "install the postgresql package"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_user() -> str | None:
    """The account the server runs as when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PnlError("running as root, and no 'postgres' or 'nobody' account to run PostgreSQL as")


@dataclass
class LocalServer:
    data_dir: Path
    port: int
    user: str = "postgres"
    password: str = "postgres"
    host: str = "127.0.0.1"
    bindir: Path | None = None

    def __post_init__(self) -> None:
        # Absolute: every tool runs with cwd "/" (the server account may not reach ours).
        self.data_dir = Path(os.path.abspath(self.data_dir))

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/postgres"

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        bindir = self.bindir or find_bindir()
        cmd = [str(bindir / args[0]), *args[1:]]
        runas = service_user()
        if runas:
            cmd = ["runuser", "-u", runas, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and proc.returncode != 0:
            raise PnlError(f"{args[0]} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
        return proc

    def chown(self, path: Path) -> None:
        runas = service_user()
        if runas:
            entry = pwd.getpwnam(runas)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.chown(self.data_dir)
        fd, pwfile = tempfile.mkstemp(prefix="pnl-pw-")
        try:
            os.write(fd, (self.password + "\n").encode())
            os.close(fd)
            self.chown(Path(pwfile))
            self._run([
                "initdb", "-D", str(self.data_dir), "-U", self.user, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
            ])
        finally:
            os.unlink(pwfile)

    def start(self, extra_settings: dict[str, str] | None = None, timeout_s: float = 60.0) -> None:
        """Start `postgres` itself, with an argument list: no shell ever sees the
        data directory or a setting (pg_ctl start would put both in a shell
        command line). Returns when the server accepts connections."""
        settings = {
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": "",   # TCP on 127.0.0.1 only; no socket path to quote or overflow
            "max_connections": "200",
            **(extra_settings or {}),
        }
        if any(c in f"{self.data_dir}{k}{v}" for k, v in settings.items() for c in "\0\r\n"):
            raise PnlError("the data directory and server settings must not contain line breaks")
        bindir = self.bindir or find_bindir()
        cmd = [str(bindir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        runas = service_user()
        if runas:
            cmd = ["runuser", "-u", runas, "--", *cmd]
        spawned_at = int(time.time())
        with open(self.data_dir / "server.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/",
                                    start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._ready_since(spawned_at):
                return
            if proc.poll() is not None:
                raise PnlError(f"postgres did not start ({proc.returncode}): {self._log_tail()}")
            time.sleep(0.05)
        raise PnlError(f"postgres did not become ready within {timeout_s:.0f}s: {self._log_tail()}")

    def _ready_since(self, spawned_at: int) -> bool:
        """postmaster.pid says 'ready' and was written by a server started at or
        after spawned_at (not a stale file of a server that crashed)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        try:
            return len(lines) >= 8 and int(lines[2]) >= spawned_at and lines[7].strip() == "ready"
        except ValueError:
            return False

    def _log_tail(self) -> str:
        try:
            lines = (self.data_dir / "server.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no server.log"
        return " | ".join(lines[-3:]) or "server.log is empty"

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` (sessions are told and ended, 57P01), `immediate`
        (every process quits at once, crash recovery on the next start) or
        `smart` (waits for sessions to end)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        self._run(["pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def restart(self, mode: str = "fast", extra_settings: dict[str, str] | None = None) -> None:
        """Stop (in `mode`) and start again on the same port: what a server
        restart or failover looks like to the clients."""
        self.stop(mode)
        self.start(extra_settings)

    def running(self) -> bool:
        """pg_ctl status: 0 when a server runs on this data directory."""
        if not self.initialized():
            return False
        return self._run(["pg_ctl", "-D", str(self.data_dir), "status"], check=False).returncode == 0


def throwaway_dir(prefix: str = "pnl-pg-") -> Path:
    """A fresh directory the server account can reach (/tmp is world-traversable;
    pytest's per-user temp root is not)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
