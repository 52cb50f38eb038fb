"""`msa-lsp doctor`: says what is installed and usable (LSP libraries, grammars, torch/triton/GPU,
bundled model, worker) and exits 1 when something the configured setup needs is missing.

torch and triton are probed in a child interpreter, so neither this process nor the server ever
loads them. Not the place for fixing anything: it only reports.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import pathlib
import socket
import subprocess
import sys
from dataclasses import dataclass

from lsp.index.languages import LANGUAGES, grammar

TORCH_PROBE = """
import importlib, json
info = {}
try:
    torch = importlib.import_module("torch")
    info["torch"] = torch.__version__
    info["cuda"] = torch.cuda.is_available()
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if info["cuda"] else []
except Exception as exc:
    info["torch_error"] = f"{type(exc).__name__}: {exc}"
try:
    triton = importlib.import_module("triton")
    info["triton"] = triton.__version__
except Exception as exc:
    info["triton_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(info))
"""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_libraries() -> list[Check]:
    checks = []
    for dist in ("pygls", "lsprotocol", "tree-sitter"):
        version = _version(dist)
        checks.append(Check(dist, version is not None, version or "not installed"))
    return checks


def check_grammars() -> list[Check]:
    checks = []
    for language in LANGUAGES:
        try:
            grammar(language)
            checks.append(Check(f"grammar {language}", True, "loaded"))
        except Exception as exc:
            checks.append(Check(f"grammar {language}", False, f"{type(exc).__name__}: {exc}"))
    return checks


def check_torch(needed: bool, timeout_s: float = 120) -> list[Check]:
    """torch, triton and GPUs, probed in a child process."""
    try:
        run = subprocess.run([sys.executable, "-c", TORCH_PROBE], capture_output=True, text=True, timeout=timeout_s)
        info = json.loads(run.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as exc:
        return [Check("torch", False, f"probe failed: {exc}", needed)]
    checks = [Check("torch", "torch" in info, info.get("torch") or info.get("torch_error", "not installed"), needed),
              Check("triton", "triton" in info, info.get("triton") or info.get("triton_error", "not installed"), False)]
    if "torch" in info:
        gpus = info.get("gpus") or []
        checks.append(Check("gpu", bool(gpus), ", ".join(gpus) if gpus else "none (the worker runs on CPU)", False))
    return checks


def bundled_model_dir() -> pathlib.Path | None:
    spec = importlib.util.find_spec("inference")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "bundled"


def check_model(model: str, needed: bool) -> Check:
    directory = pathlib.Path(model) if model else bundled_model_dir()
    label = "model" if model else "bundled model"
    if directory is None or not directory.is_dir():
        return Check(label, False, f"{directory or 'inference package'} not found", needed)
    has_config = (directory / "config.json").is_file()
    weights = sorted(p.name for p in directory.glob("*.safetensors"))
    if not has_config or not weights:
        missing = "config.json" if not has_config else "*.safetensors weights"
        return Check(label, False, f"{directory}: no {missing}", needed)
    return Check(label, True, f"{directory} ({', '.join(weights)})", needed)


def check_worker(address: str, timeout_s: float = 3.0) -> Check:
    """Whether the configured worker accepts connections ("unix:/path" or "tcp:host:port")."""
    try:
        if address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout_s)
            sock.connect(address[len("unix:"):])
        elif address.startswith("tcp:"):
            host, _, port = address[len("tcp:"):].rpartition(":")
            sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        else:
            return Check("worker", False, f"bad address {address!r}: expected unix:/path or tcp:host:port")
        sock.close()
        return Check("worker", True, f"{address} accepts connections")
    except (OSError, ValueError) as exc:
        return Check("worker", False, f"{address}: {exc}")


def run_checks(model: str = "", worker_address: str = "") -> list[Check]:
    local_worker = not worker_address  # a spawned worker needs torch and a model on this machine
    checks = check_libraries() + check_grammars() + check_torch(needed=local_worker)
    checks.append(check_model(model, needed=local_worker))
    if worker_address:
        checks.append(check_worker(worker_address))
    return checks


def main(args) -> int:
    checks = run_checks(getattr(args, "model", None) or "", getattr(args, "worker_address", None) or "")
    width = max(len(c.name) for c in checks)
    for check in checks:
        mark = "ok" if check.ok else ("MISSING" if check.required else "absent")
        print(f"{check.name:<{width}}  {mark:<7}  {check.detail}")
    failed = [c.name for c in checks if c.required and not c.ok]
    print(f"\n{'all required parts present' if not failed else 'missing: ' + ', '.join(failed)}")
    return 1 if failed else 0
