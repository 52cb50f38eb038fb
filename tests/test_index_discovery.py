"""Which files the index takes and which it skips (and why): gitignore rules, secrets, binaries,
size cap, encodings, symlink loops and files that vanish mid-index."""

import os
import shutil
from pathlib import Path

import pytest

from lsp.index import IndexOptions, WorkspaceIndex
from lsp.index.discovery import discover
from lsp.index.gitignore import IgnoreStack

MULTI = Path(__file__).parent / "fixtures" / "multi"


def _ignored(lines, rel, is_dir=False, base=""):
    stack = IgnoreStack()
    stack.add(base, lines)
    return stack.ignored(rel, is_dir)


@pytest.mark.parametrize("lines, rel, is_dir, expected", [
    (["*.log"], "a/b/debug.log", False, True),
    (["*.log", "!keep.log"], "keep.log", False, False),
    (["*.log", "!keep.log"], "x/keep.log", False, False),
    (["build/"], "build", True, True),
    (["build/"], "build", False, False),  # a dir-only pattern never matches a file
    (["build/"], "src/build", True, True),
    (["/build"], "src/build", True, False),  # anchored to the .gitignore's directory
    (["/build"], "build", True, True),
    (["doc/*.txt"], "doc/a.txt", False, True),
    (["doc/*.txt"], "doc/x/a.txt", False, False),
    (["**/cache"], "a/b/cache", True, True),
    (["a/**/z.py"], "a/z.py", False, True),
    (["a/**/z.py"], "a/b/c/z.py", False, True),
    (["logs/**"], "logs/x/y.txt", False, True),
    (["file[0-9].py"], "file7.py", False, True),
    (["file[!0-9].py"], "file7.py", False, False),
    (["\\#hash.py"], "#hash.py", False, True),
    (["# comment", "", "  "], "comment", False, False),
])
def test_gitignore_rules(lines, rel, is_dir, expected):
    assert _ignored(lines, rel, is_dir) is expected


def test_nested_gitignore_overrides_and_scopes_to_its_directory():
    stack = IgnoreStack()
    stack.add("", ["*.tmp"])
    stack.add("sub", ["!keep.tmp", "local.py"])
    assert stack.ignored("a.tmp", False)
    assert not stack.ignored("sub/keep.tmp", False)
    assert stack.ignored("sub/local.py", False)
    assert not stack.ignored("local.py", False)  # rule of sub/.gitignore does not reach the root


def test_multi_fixture_skips_with_reasons():
    found = discover(str(MULTI), IndexOptions())
    rel = {os.path.relpath(p, MULTI) for p, _ in found.files}
    reasons = {os.path.relpath(s.path, MULTI): s.reason for s in found.skipped}
    assert reasons[".env"] == "secret"
    assert reasons["assets/logo.png"].startswith("binary")
    assert "generated/gen.py" not in rel  # directory in .gitignore
    assert "docs/draft_notes.py" not in rel  # nested docs/.gitignore
    assert "docs/draft_keep.py" in rel  # ... and its negation
    assert {"py/app/models.py", "ts/src/view.tsx", "go/main.go", "rust/src/lib.rs", "ts/src/legacy.js"} <= rel
    assert not any(part == ".git" for r in rel for part in r.split(os.sep))


def test_unusual_files_are_skipped_with_reasons_never_a_crash(tmp_path):
    (tmp_path / "ok.py").write_text("def ok():\n    return 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "ok.cpython-311.pyc").write_bytes(b"\xa7\r\r\n\x00\x00")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hook.py").write_text("x = 1\n")
    (tmp_path / "huge.py").write_bytes(b"x = 1\n" * (10 * 1024 * 1024 // 6))  # ~10 MB
    (tmp_path / "latin1.py").write_bytes(b"name = 'caf\xe9'\n")
    (tmp_path / "nul.py").write_bytes(b"x = 1\x00\x00\n")
    (tmp_path / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "id_rsa").write_text("key\n")
    (tmp_path / "credentials.json").write_text("{}\n")
    (tmp_path / ".npmrc").write_text("//registry.npmjs.org/:_authToken=abc\n")
    (tmp_path / "loop").mkdir()
    os.symlink(tmp_path / "loop", tmp_path / "loop" / "again")
    os.symlink(tmp_path / "nowhere.py", tmp_path / "dangling.py")
    index = WorkspaceIndex()
    index.build(str(tmp_path), workers=1)
    reasons = {os.path.relpath(s.path, tmp_path): s.reason for s in index.skipped}
    assert [os.path.basename(p) for p in index.files] == ["ok.py"]
    assert not any("__pycache__" in r or ".git" in r for r in reasons)  # never walked, so never listed
    assert reasons["huge.py"].startswith("too large")
    assert reasons["latin1.py"].startswith("not UTF-8")
    assert reasons["nul.py"].startswith("binary")
    assert reasons["server.pem"] == reasons["id_rsa"] == reasons["credentials.json"] == "secret"
    assert reasons[".npmrc"] == "secret"
    assert reasons[os.path.join("loop", "again")] == "symlink loop"
    assert reasons["dangling.py"] == "broken symlink"


def test_options_exclude_size_and_secrets(tmp_path):
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "lib.py").write_text("X = 1\n")
    (tmp_path / "app.min.js").write_text("var a=1;\n")
    (tmp_path / "mid.py").write_text("y = 2\n" * 100)
    (tmp_path / ".env.local").write_text("TOKEN=1\n")
    (tmp_path / ".npmrc").write_text("save-exact=true\n")  # no token: not a secret
    found = discover(str(tmp_path), IndexOptions(exclude=("vendor/", "*.min.js"), max_file_size=100))
    assert {os.path.basename(p) for p, _ in found.files} == set()
    reasons = {os.path.basename(s.path): s.reason for s in found.skipped}
    assert reasons["mid.py"].startswith("too large") and reasons[".env.local"] == "secret"
    assert ".npmrc" not in reasons
    with_secrets = discover(str(tmp_path), IndexOptions(include_secrets=True))
    assert ".env.local" not in {os.path.basename(s.path) for s in with_secrets.skipped}
    assert {os.path.basename(p) for p, _ in with_secrets.files} == {"lib.py", "app.min.js", "mid.py"}


def test_file_deleted_during_indexing_is_skipped(tmp_path):
    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_text(f"NAME = {name!r}\n")

    def delete_b(done, total):
        if done == 0:
            (tmp_path / "b.py").unlink()

    index = WorkspaceIndex()
    index.build(str(tmp_path), progress=delete_b, workers=1)
    assert [os.path.basename(p) for p in index.files] == ["a.py", "c.py"]
    reasons = {os.path.basename(s.path): s.reason for s in index.skipped}
    assert reasons["b.py"].startswith("unreadable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file_is_skipped(tmp_path):
    target = tmp_path / "secret_perm.py"
    target.write_text("x = 1\n")
    target.chmod(0)
    index = WorkspaceIndex()
    index.build(str(tmp_path), workers=1)
    assert index.skipped[0].reason.startswith("unreadable")


def test_process_pool_gives_the_same_index_as_one_process(tmp_path):
    shutil.copytree(MULTI, tmp_path / "multi")
    for i in range(220):  # enough files to use the pool
        (tmp_path / "multi" / "py" / f"gen_{i}.py").write_text(f"def f_{i}():\n    return {i}\n")
    one, pool = WorkspaceIndex(), WorkspaceIndex()
    one.build(str(tmp_path / "multi"), workers=1)
    pool.build(str(tmp_path / "multi"), workers=2)
    assert one.files == pool.files
    assert one.skipped == pool.skipped
    assert one.symbol_count() == pool.symbol_count() and one.edge_count() == pool.edge_count()
    assert one.all_diagnostics() == pool.all_diagnostics()


def test_a_killed_parse_worker_does_not_lose_files(tmp_path, caplog):
    import multiprocessing
    import signal

    for i in range(240):
        (tmp_path / f"m{i}.py").write_text(f"def f{i}():\n    return {i}\n" * 20)
    killed = []

    def kill_workers(done, total):
        if done and not killed:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)

    index = WorkspaceIndex()
    index.build(str(tmp_path), progress=kill_workers, workers=2)
    assert killed and len(index.files) == 240 and index.symbol_count() == 240 * 20
    assert "parse workers failed" in caplog.text
