"""The VS Code extension without VS Code: `npm ci` (once per lock file), type check, the node test
runner's unit tests (settings, status), the settings-vs-server check, the protocol test against the
real server, and an offline `vsce package` whose .vsix holds the bundle and the manifest.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.editors.conftest import PYTHON, VSCODE, npm, run_in_vscode_dir as run


@pytest.fixture(scope="session")
def compiled_tests(node_modules) -> Path:
    run([npm(), "run", "--silent", "typecheck"])
    run(["npx", "tsc", "-p", "tsconfig.test.json"])
    return VSCODE / "out" / "test"


@pytest.mark.parametrize("name", ["settings", "status", "serverLog", "serverKeys", "protocol"])
def test_node_suite(compiled_tests, name):
    proc = run(["node", "--test", str(compiled_tests / f"{name}.test.js")], MSA_PYTHON=str(PYTHON))
    assert "# fail 0" in proc.stdout and "# pass 0" not in proc.stdout, proc.stdout[-4000:]


def test_vsix_packages_offline(vsix):
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
    assert {"extension/package.json", "extension/dist/extension.js"} <= names
    assert not any(n.startswith("extension/node_modules/") or n.startswith("extension/src/") for n in names)
