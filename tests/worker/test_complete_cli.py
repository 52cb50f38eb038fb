"""`msa-lsp complete FILE:LINE:COL` from a shell: indexes the repository, starts a worker, prints the completion."""

from __future__ import annotations

import subprocess
import sys

from tests.worker.conftest import REPO, worker_env


def run_complete(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lsp", "complete", *args], capture_output=True, text=True,
                          timeout=120, env=worker_env(), cwd=REPO)


def make_repository(root):
    (root / ".git").mkdir(parents=True)
    (root / "pkg").mkdir()
    (root / "pkg" / "util.py").write_text("def helper(x):\n    return x * 2\n")
    (root / "pkg" / "app.py").write_text("from pkg.util import helper\n\n\ndef main():\n    value = helper(3)\n    \n")
    (root / ".env").write_text("TOKEN=secret\n")  # never sent to the model
    return root / "pkg" / "app.py"


def test_complete_prints_the_completion_for_the_cursor(tiny_model, tmp_path):
    target = make_repository(tmp_path / "repo")
    result = run_complete(f"{target}:6:5", "--model", str(tiny_model), "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "2 files from" in result.stderr and str(tmp_path / "repo") in result.stderr


def test_complete_reports_bad_positions_and_models_clearly(tiny_model, tmp_path):
    target = make_repository(tmp_path / "repo")
    result = run_complete(f"{target}:60:1", "--model", str(tiny_model))
    assert result.returncode == 2 and "has no line 60" in result.stderr
    result = run_complete(f"{target}:zero", "--model", str(tiny_model))
    assert result.returncode == 2 and "FILE:LINE:COL" in result.stderr
    result = run_complete(f"{target}:6:5", "--model", str(tmp_path / "no-model"))
    assert result.returncode == 2 and "config.json" in result.stderr
