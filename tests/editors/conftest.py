"""Shared pieces of the editor tests: paths, the tool binaries, and a small multi-file workspace."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EDITORS = REPO / "editors"
VSCODE = EDITORS / "vscode"
NVIM_PLUGIN = EDITORS / "nvim"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PYTHON = Path(sys.executable)
NVIM = Path(sys.executable).with_name("nvim")

FIXTURE = REPO / "tests" / "fixtures" / "multi"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of tests/fixtures/multi made a git repository (its root marker, as a user's clone has)."""
    if not FIXTURE.is_dir():
        pytest.fail(f"fixture workspace {FIXTURE} is missing")
    root = tmp_path / "ws"
    shutil.copytree(FIXTURE, root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """HOME and XDG dirs under tmp, so no user config or state leaks in or out."""
    env = dict(os.environ)
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        path = tmp_path / "home" / name.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["HOME"] = str(tmp_path / "home")
    return env


def npm() -> str:
    found = shutil.which("npm")
    if not found:
        pytest.fail("npm is not installed; the VS Code extension tests need node 20 and npm")
    return found


def run_in_vscode_dir(cmd: list[str], timeout: float = 180, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=VSCODE, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`npm ci` when node_modules is missing or was installed from another package-lock.json."""
    lock = VSCODE / "package-lock.json"
    stamp = VSCODE / "node_modules" / ".msa-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        run_in_vscode_dir([npm(), "ci", "--no-audit", "--no-fund"], timeout=300)
        stamp.write_text(digest)
    return VSCODE / "node_modules"


@pytest.fixture(scope="session")
def vsix(node_modules) -> Path:
    """The extension bundled with esbuild and packaged offline by vsce."""
    path = VSCODE / "dist" / "msa-lsp.vsix"
    path.unlink(missing_ok=True)
    run_in_vscode_dir([npm(), "run", "--silent", "package"])
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random-weight checkpoint (the worker tests' builder): enough for ghost text to appear."""
    from tests.worker.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "qwen2")
