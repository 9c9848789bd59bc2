"""Real OS processes running the CLI, for crash, signal and concurrency tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_batch(dsn: str, *args: str, pause: float = 0.0, global_args: tuple[str, ...] = ()) -> subprocess.Popen:
    """`pnl [GLOBAL_ARGS] batch run ARGS --json` as a real process (pause: the test-only
    sleep between claiming a chunk and finalizing it)."""
    env = {**os.environ, "DATABASE_URL": dsn}
    if pause:
        env["PNL_TEST_PAUSE_AFTER_CLAIM"] = str(pause)
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *global_args, "batch", "run", *args, "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
