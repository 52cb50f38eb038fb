"""The language server with `msa.worker.devices` = "cpu,cpu": it sees one worker, shows each rank's share of the
cache in msa/status, serves completions, and when a rank is killed the worker restarts and serving goes on."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.worker.test_lsp_completion import APP, CURSOR, UTIL, WAIT_S, Recorder, inline_params


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _field(record, name: str):
    return record[name] if isinstance(record, dict) else getattr(record, name)  # pygls: nested named tuples


def _ranked(status) -> bool:
    cache = status["cache"]
    ranks = cache.get("ranks") or []
    return (status["worker"]["state"] == "ready" and cache["filled"] == 2 and len(ranks) == 2
            and [_field(r, "rank") for r in ranks] == [0, 1]
            and sum(_field(r, "segments") for r in ranks) == cache["segments"])


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "lsp", "serve"]))
async def client(lsp_client: LanguageClient, tmp_path, tiny_model):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "util.py").write_text(UTIL)
    (root / "app.py").write_text(APP)
    lsp_client.root = root
    lsp_client.recorder = recorder = Recorder()

    @lsp_client.feature("msa/status")
    def _status(params):
        recorder.on_status(params)

    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim"), root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="repo")],
        initialization_options={"msa": {"model": str(tiny_model), "worker": {"devices": "cpu,cpu"},
                                        "completion": {"debounceMs": 0, "maxTokens": 8}}}))
    lsp_client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=(root / "app.py").as_uri(), language_id="python", version=1, text=APP)))
    yield
    await lsp_client.shutdown_session()


async def test_two_rank_worker_serves_and_survives_a_dead_rank(client: LanguageClient):
    status = await client.recorder.until(_ranked)
    result = await asyncio.wait_for(client.text_document_inline_completion_async(inline_params(client)), WAIT_S)
    assert result.items and result.items[0].insert_text.strip()
    pid = int(status["worker"]["message"].split()[-1])  # "worker pid N"
    followers = [c for c in _children(pid) if "inference.cp_engine" in open(f"/proc/{c}/cmdline").read()]
    assert len(followers) == 1, followers
    os.kill(followers[0], signal.SIGKILL)
    await client.recorder.until(lambda s: s["worker"]["state"] in ("restarting", "starting", "error"))
    status = await client.recorder.until(_ranked)
    assert int(status["worker"]["message"].split()[-1]) != pid
    result = await asyncio.wait_for(client.text_document_inline_completion_async(inline_params(client)), WAIT_S)
    assert result.items and result.items[0].insert_text.strip()
