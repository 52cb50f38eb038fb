"""Model-written code actions end to end: real server over stdio (pytest-lsp), real workers over real sockets.

Two workers serve the tiny random checkpoint of tests/worker: one as built (no chat template, so it cannot
reason) and one whose copy has a chat template with a thinking format (so it can). Tests read what each worker
was asked from its `stats` frame (`worker.generate_log`), over their own socket.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from inference import protocol
from tests.worker.conftest import WorkerProcess, build_tiny_model, greeted

WAIT_S = 60
THINKING_TEMPLATE = (  # shaped like Qwen3's: thinking unless enable_thinking is false
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}")

UTIL_SAVED = 'def helper(x):\n    """Double x."""\n    return x * 2\n\n\ndef area(width, height):\n' \
             '    """Return the area of a width by height rectangle."""\n    ...\n'
UTIL_EDITED = UTIL_SAVED.replace("def helper(x):", "def helper(x, scale):").replace("x * 2", "x * scale")
APP = "from util import helper\n\n\ndef main():\n    value = helper(3)\n    config = dict(\n" \
      "        name=\"main\",\n        size=3,\n    )\n    return value, config\n"
REPORT = "import util\n\n\ndef total(items):\n    return sum(util.helper(i) for i in items)\n"


@pytest.fixture(scope="session")
def ai_tiny_model(tmp_path_factory) -> pathlib.Path:
    """tests/worker's tiny model, also never writing whitespace: greedy output is one run of letters (one
    identifier), so where a lone identifier parses a proposal parses, and where it cannot, it cannot."""
    import torch
    from tokenizers import Tokenizer
    from transformers import Qwen2ForCausalLM

    path = build_tiny_model(tmp_path_factory.mktemp("ai-tiny") / "qwen2")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    model = Qwen2ForCausalLM.from_pretrained(str(path)).eval()
    with torch.no_grad():
        for token_id in range(tok.get_vocab_size(with_added_tokens=True)):
            text = tok.decode([token_id], skip_special_tokens=False)
            if text != text.strip():
                model.lm_head.weight[token_id].zero_()
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def thinking_model(ai_tiny_model, tmp_path_factory) -> pathlib.Path:
    """The same checkpoint with a chat template that has a thinking format."""
    target = tmp_path_factory.mktemp("thinking") / "model"
    shutil.copytree(ai_tiny_model, target)
    (target / "tokenizer_config.json").write_text(json.dumps({"chat_template": THINKING_TEMPLATE}))
    return target


def _start_worker(model: pathlib.Path, sock_dir: pathlib.Path) -> WorkerProcess:
    os.chmod(sock_dir, 0o700)
    return WorkerProcess(["--model", str(model), "--device", "cpu", "--socket", str(sock_dir / "w.sock")])


@pytest.fixture(scope="session")
def plain_worker(ai_tiny_model, tmp_path_factory):
    process = _start_worker(ai_tiny_model, tmp_path_factory.mktemp("sock-plain"))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def thinking_worker(thinking_model, tmp_path_factory):
    process = _start_worker(thinking_model, tmp_path_factory.mktemp("sock-think"))
    yield process
    process.stop()


def generate_log(worker: WorkerProcess) -> list[dict]:
    """What the worker's generate requests asked for (every connection), oldest first."""
    sock = greeted(worker)
    try:
        protocol.write_frame(sock, protocol.simple("stats", 2))
        return protocol.read_frame(sock)["stats"]["worker"]["generate_log"]
    finally:
        sock.close()


def write_repo(root: pathlib.Path) -> pathlib.Path:
    root.mkdir()
    (root / "util.py").write_text(UTIL_SAVED)
    (root / "app.py").write_text(APP)
    (root / "report.py").write_text(REPORT)
    return root


def capabilities(profile: str, *, tags: bool = False) -> types.ClientCapabilities:
    caps = client_capabilities(profile)
    if tags:
        caps.text_document.code_action.tag_support = types.CodeActionTagOptions(
            value_set=[types.CodeActionTag.LlmGenerated])
    return caps


async def open_session(client: LanguageClient, root: pathlib.Path, worker: WorkerProcess, *, profile: str,
                       reasoning: str = "adaptive", tags: bool = False, extra: dict | None = None) -> None:
    client.root = root
    client.statuses = statuses = []

    @client.feature("msa/status")
    def _status(params):
        statuses.append(params)

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def _register(params):  # the server asks for file watchers
        return None

    options = {"msa": {"worker": {"address": worker.address}, "reasoning": reasoning,
                       "completion": {"debounceMs": 0}, **(extra or {})}}
    await client.initialize_session(types.InitializeParams(
        capabilities=capabilities(profile, tags=tags), root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="repo")],
        initialization_options=options))
    await wait_for(client, lambda s: s.worker.state == "ready" and s.cache.filled >= 3 and s.index.state == "ready")


async def wait_for(client: LanguageClient, predicate, timeout: float = WAIT_S):
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.statuses and predicate(client.statuses[-1]):
            return client.statuses[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"status never matched; last: {client.statuses[-1:]}")


def open_file(client: LanguageClient, name: str, text: str, version: int = 1) -> str:
    uri = (client.root / name).as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=version, text=text)))
    return uri


SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "lsp", "serve"])


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):
    """A bare client; each test opens its own session (options, worker, capabilities) with open_session."""
    yield lsp_client
    await lsp_client.shutdown_session()


def applied(edit: types.WorkspaceEdit, texts: dict[str, str]) -> dict[str, str]:
    """{uri: text} after the WorkspaceEdit's text edits, as an editor applies them (ASCII texts: units = chars);
    texts not given are read from disk."""
    per_uri: dict[str, list] = {}
    for change in edit.document_changes or []:
        per_uri.setdefault(change.text_document.uri, []).extend(change.edits)
    for uri, edits in (edit.changes or {}).items():
        per_uri.setdefault(uri, []).extend(edits)
    out = {}
    for uri, edits in per_uri.items():
        text = texts.get(uri)
        if text is None:
            text = pathlib.Path(uri.removeprefix("file://")).read_text()
        lines = text.split("\n")

        def offset(position):
            return sum(len(line) + 1 for line in lines[: position.line]) + position.character

        for one in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
            text = text[: offset(one.range.start)] + one.new_text + text[offset(one.range.end):]
        out[uri] = text
    return out
