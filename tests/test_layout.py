"""The architecture's import rules, checked by scanning every module's imports (DESIGN.md §1)."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _imports(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name.split(".")[0], alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module.split(".")[0], node.module


def test_lsp_never_imports_torch_triton_or_kernels():
    bad = [(str(p.relative_to(ROOT)), full) for p, top, full in _imports("lsp") if top in {"torch", "triton", "kernels"}]
    assert not bad


def test_lsp_reaches_inference_only_through_the_protocol_module():
    bad = [
        (str(p.relative_to(ROOT)), full)
        for p, top, full in _imports("lsp")
        if top == "inference" and full != "inference.protocol" and p.name != "cli.py"
    ]
    assert not bad


def test_inference_and_kernels_never_import_lsp():
    for package in ("inference", "kernels"):
        bad = [(str(p.relative_to(ROOT)), full) for p, top, full in _imports(package) if top == "lsp"]
        assert not bad, package


def test_kernels_import_only_torch_triton_and_themselves():
    allowed = {"torch", "triton", "kernels", "__future__", "math", "os", "functools", "typing", "dataclasses"}
    bad = [(str(p.relative_to(ROOT)), full) for p, top, full in _imports("kernels") if top not in allowed]
    assert not bad


def test_protocol_module_needs_only_stdlib_and_msgpack():
    path = ROOT / "inference" / "protocol.py"
    if not path.exists():
        return
    tops = {top for p, top, _ in _imports("inference") if p == path}
    assert tops <= set(sys.stdlib_module_names) | {"msgpack"}


def test_starting_the_server_package_loads_no_torch():
    code = "import sys, lsp.cli, lsp.server; assert 'torch' not in sys.modules, 'torch loaded'"
    if not (ROOT / "lsp" / "server.py").exists():
        code = "import sys, lsp.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
