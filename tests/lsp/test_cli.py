"""`msa-lsp serve --tcp/--log-file` and `msa-lsp doctor` as a user runs them."""

import json
import socket
import subprocess
import sys
import time

from tests.lsp.conftest import NO_MODEL
from tests.lsp.test_bad_input import _message, _read_message

MSA_LSP = [sys.executable, "-m", "lsp"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_over_tcp_logs_to_file_not_stdout(tmp_path):
    port, log_file = _free_port(), tmp_path / "server.log"
    server = subprocess.Popen(MSA_LSP + ["serve", "--tcp", f"127.0.0.1:{port}", "--log-file", str(log_file)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=20)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "server never listened"
                time.sleep(0.05)
        with conn, conn.makefile("rb") as reader:
            conn.sendall(_message(id=1, method="initialize", params={
                "capabilities": {}, "rootUri": tmp_path.as_uri(), "initializationOptions": {"msa": NO_MODEL}}))
            reply = _read_message(reader)
            assert reply["id"] == 1 and reply["result"]["serverInfo"]["name"] == "msa-lsp"
    finally:
        server.kill()
        stdout, _ = server.communicate()
    assert stdout == b""
    assert "position encoding utf-16" in log_file.read_text()


def test_doctor_reports_parts_and_fails_on_a_missing_worker(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "test"}))
    (model / "model.safetensors").write_bytes(b"\0" * 8)
    ok = subprocess.run(MSA_LSP + ["doctor", "--model", str(model)], capture_output=True, text=True, timeout=120)
    for line in ("grammar python", "grammar typescript", "grammar go", "grammar rust", "torch", "model"):
        assert line in ok.stdout
    assert ok.returncode == 0, ok.stdout
    # a remote worker that refuses connections is required; a missing local model then is not
    refused = subprocess.run(MSA_LSP + ["doctor", "--model", str(tmp_path), "--worker-address",
                                        f"tcp:127.0.0.1:{_free_port()}"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stdout.rstrip().endswith("missing: worker")
    assert "no config.json" in refused.stdout
