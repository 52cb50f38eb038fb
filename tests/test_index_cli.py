"""`msa-lsp index` and `msa-lsp check` as a user runs them: output lines, JSON and exit status."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path("tests") / "fixtures"


def _run(*args):
    return subprocess.run([sys.executable, "-m", "lsp", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_check_sample_prints_linter_lines_and_exits_1():
    result = _run("check", str(FIXTURES / "sample"))
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "tests/fixtures/sample/inventory/cli.py:14:18: error syntax-error '(' was never closed",
        "tests/fixtures/sample/inventory/report.py:4:6: warning unresolved-import unresolved import "
        "'inventory.currency': no module 'inventory.currency' in the workspace",
    ]
    assert "1 error(s), 1 warning(s) in 6 files" in result.stderr


def test_check_json_and_exit_0_without_errors(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .b import g\n\n\ndef f():\n    return g()\n")
    (tmp_path / "pkg" / "b.py").write_text("from . import missing\n\n\ndef g():\n    return 1\n")
    result = _run("check", str(tmp_path), "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["errors"] == 0 and report["warnings"] == 1 and report["files"] == 3
    [diag] = report["diagnostics"]
    assert diag["path"].endswith(os.path.join("pkg", "b.py"))
    assert (diag["line"], diag["column"], diag["code"]) == (1, 6, "unresolved-import")


def test_check_columns_are_characters_on_non_ascii_lines(tmp_path):
    (tmp_path / "u.py").write_text('s = "😀中文"; f(\n', encoding="utf-8")
    result = _run("check", str(tmp_path / "u.py"))
    assert result.returncode == 1
    assert result.stdout.strip().endswith("u.py:1:13: error syntax-error '(' was never closed")


def test_index_summary_text_and_json():
    result = _run("index", str(FIXTURES / "multi"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Indexed 24 files" in out
    for line in ("python", "typescript", "tsx", "javascript", "go", "rust"):
        assert f"  {line}" in out
    assert "cycle: py/app/models.py -> py/app/services.py -> py/app/repository.py -> py/app/models.py" in out
    assert ".env: secret" in out and "assets/logo.png: binary (NUL bytes)" in out
    assert "indexing [" not in result.stderr  # no progress bar when stderr is not a terminal
    summary = json.loads(_run("index", str(FIXTURES / "multi"), "--format", "json").stdout)
    assert summary["languages"] == {"go": 4, "javascript": 1, "python": 9, "rust": 4, "tsx": 1, "typescript": 5}
    assert summary["symbols"] > 40 and summary["import_edges"] > 15
    assert {"path": ".env", "reason": "secret"} in summary["skipped"]


def test_missing_path_is_a_clear_error():
    result = _run("check", "no/such/dir")
    assert result.returncode == 2 and "no such file or directory" in result.stderr


def test_index_draws_a_progress_bar_on_a_terminal():
    import pty

    leader, follower = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "lsp", "index", str(FIXTURES / "multi")], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=follower, timeout=120)
        os.close(follower)
        follower = None
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    assert result.returncode == 0
    assert b"indexing [" in drawn and b"24/24 files" in drawn
