"""No shell: a --data-dir full of shell metacharacters works and injects nothing."""

from __future__ import annotations

import ast
import json
import shutil
import tempfile
from pathlib import Path

import psycopg

from tests.conftest import ROOT, run_cli

HOSTILE = "a b $(touch {m}1) ;touch {m}2; `touch {m}3` \"q' -c listen_addresses=* |touch {m}4 &"


def test_hostile_data_dir_starts_a_server_on_127_0_0_1_only() -> None:
    parent = Path(tempfile.mkdtemp(prefix="pnl-no-shell-"))
    parent.chmod(0o755)
    marker = str(parent / "injected")
    # One path component with every metacharacter (no '/': it stays one directory).
    data_dir = parent / HOSTILE.format(m=marker.replace("/", "_"))
    data_dir_abs = parent / HOSTILE.replace("/", "_").format(m="x")
    relative_hostile = "-c listen_addresses=*"
    try:
        for d in (data_dir, data_dir_abs):
            res = run_cli("--data-dir", str(d), "db", "start", "--json", timeout=180)
            assert res.code == 0, res.err
            url = run_cli("--data-dir", str(d), "db", "url", "--show-password").out.strip()
            with psycopg.connect(url) as conn:
                assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
                assert conn.execute("SHOW data_directory").fetchone() == (str(d),)
            assert run_cli("--data-dir", str(d), "db", "stop").out.strip() == "stopped"
        # A relative --data-dir that looks like a server option is a directory, made absolute.
        res = run_cli("--data-dir", relative_hostile, "db", "status", "--json")
        assert res.code == 0 and json.loads(res.out)["data_dir"].startswith("/"), res.err
        injected = [p for p in parent.iterdir() if "injected" in p.name and p.name.startswith("_")] + \
            list(Path("/").glob("injected*")) + list(Path(tempfile.gettempdir()).glob("*injected[1-4]"))
        assert injected == []
        assert not any(Path(marker + str(i)).exists() for i in range(1, 5))
    finally:
        for d in (data_dir, data_dir_abs):
            run_cli("--data-dir", str(d), "db", "stop")
        shutil.rmtree(parent, ignore_errors=True)


def test_no_subprocess_call_uses_a_shell() -> None:
    """Every subprocess in shipped code gets an argument list, never shell=True or os.system."""
    for path in [ROOT / "cli.py", *sorted((ROOT / "pnl").glob("*.py")), *sorted((ROOT / "bench").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                assert name not in ("os.system", "os.popen", "subprocess.getoutput",
                                    "subprocess.getstatusoutput"), (path, node.lineno)
                for kw in node.keywords:
                    assert not (kw.arg == "shell" and ast.unparse(kw.value) != "False"), (path, node.lineno)
                if name.startswith("subprocess.") and node.args:
                    assert not isinstance(node.args[0], ast.Constant | ast.JoinedStr), (path, node.lineno)
        assert "pg_ctl\", \"-D\", str(self.data_dir), \"-l\"" not in path.read_text(), "pg_ctl start uses a shell"
