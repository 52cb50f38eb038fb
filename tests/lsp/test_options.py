"""Settings: parsed into frozen dataclasses; a bad value is named in a warning and falls back to its default."""

import asyncio
import dataclasses
import json
import pathlib

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp.options import SETTING_KEYS, Options, parse_options
from tests.lsp.conftest import SERVER_COMMAND, copy_fixture, start_session


def test_setting_keys_list_every_key_with_type_and_default():
    names = [key.name for key in SETTING_KEYS]
    assert names == [
        "msa.model", "msa.worker.address", "msa.worker.tokenFile", "msa.worker.command", "msa.worker.devices",
        "msa.cache.dir", "msa.cache.maxGiB", "msa.layout", "msa.attention", "msa.inlineCompletion.enable",
        "msa.completion.maxTokens", "msa.completion.debounceMs", "msa.completion.memberNames", "msa.reasoning", "msa.index.exclude",
        "msa.index.maxFileSize", "msa.index.includeSecrets", "msa.diagnostics.debounceMs", "msa.diagnostics.unusualCode"]
    by_name = {key.name: key for key in SETTING_KEYS}
    assert by_name["msa.cache.maxGiB"].default == 20 and by_name["msa.cache.maxGiB"].kind == "number"
    assert by_name["msa.reasoning"].choices == ("enabled", "adaptive", "disabled")
    assert by_name["msa.reasoning"].default == "adaptive"
    assert by_name["msa.worker.command"].kind == "array" and by_name["msa.worker.command"].default == []
    json.dumps([dataclasses.asdict(key) for key in SETTING_KEYS])  # editors can consume it as JSON


def test_parse_nested_settings_and_warn_on_bad_values():
    options, warnings = parse_options({"msa": {
        "worker": {"address": "tcp:127.0.0.1:9000", "command": ["python", "-m", "x"]},
        "layout": "diagonal", "completion": {"maxTokens": "many"}, "diagnostics": {"debounceMs": 0},
        "index": {"exclude": ["build/**"], "maxFileSize": -5}, "typo": 1}})
    assert options.worker.address == "tcp:127.0.0.1:9000" and options.worker.command == ("python", "-m", "x")
    assert options.diagnostics.debounce_ms == 0 and options.index.exclude == ("build/**",)
    assert options.layout == "parallel" and options.completion.max_tokens == 64 and options.index.max_file_size == 1_000_000
    assert len(warnings) == 4
    assert any(w.startswith("msa.layout: expected one of parallel, sequential") for w in warnings)
    assert any(w.startswith("msa.completion.maxTokens: expected an integer") for w in warnings)
    assert any(w.startswith("msa.index.maxFileSize: expected at least 0") for w in warnings)
    assert any(w.startswith("msa.typo: unknown setting") for w in warnings)
    assert parse_options(None) == (Options(), [])
    assert parse_options({"model": "/m"})[0].model == "/m"  # the section itself is accepted too
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.layout = "sequential"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND))
async def configured(lsp_client: LanguageClient, tmp_path):
    root = copy_fixture("workspace", tmp_path)
    lsp_client.root = root
    lsp_client.profile = "visual-studio-code"
    await start_session(lsp_client, "visual-studio-code", root,
                        options={"msa": {"layout": "diagonal", "diagnostics": {"debounceMs": "soon"}}})
    yield
    await lsp_client.shutdown_session()


async def test_bad_initialization_options_are_shown_and_defaulted(configured):
    client = configured
    shown = [m.message for m in client.messages if m.type == types.MessageType.Warning]
    assert any("msa.layout" in m and "diagonal" in m for m in shown)
    assert any("msa.diagnostics.debounceMs" in m for m in shown)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"msa": {"completion": {"debounceMs": -1}}}))
    await client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
    assert "msa.completion.debounceMs" in client.messages[-1].message
    assert await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="User"))


def test_docs_settings_table_matches_the_options():
    from lsp.options import settings_table
    docs = (pathlib.Path(__file__).parent.parent.parent / "docs" / "settings.md").read_text()
    assert docs.endswith(settings_table())


async def test_changed_index_settings_rebuild_the_index(one_client):
    client = one_client
    before = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="run"))
    assert any(s.name == "run" for s in before)
    client.events.ready.clear()
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"msa": {"inlineCompletion": {"enable": False}, "index": {"exclude": ["pkg/app.py"]}}}))
    await asyncio.wait_for(client.events.ready.wait(), 20)
    after = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="run"))
    assert not any(s.name == "run" for s in after)
    assert any(s.name == "User" for s in await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="User")))


async def test_reindex_command_rebuilds(one_client):
    client = one_client
    assert {"msa.reindex", "msa.restartWorker"} <= set(
        client.init_result.capabilities.execute_command_provider.commands)
    (client.root / "pkg/extra.py").write_text("def brand_new():\n    pass\n")  # no watched-file event sent
    client.events.ready.clear()
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="msa.reindex"))
    await asyncio.wait_for(client.events.ready.wait(), 20)
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="brand_new"))
    assert [s.name for s in found] == ["brand_new"]


async def test_a_changed_gitignore_rebuilds_the_index(one_client):
    client = one_client
    ignore = client.root / ".gitignore"
    ignore.write_text("pkg/app.py\n")
    client.events.ready.clear()
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        changes=[types.FileEvent(uri=ignore.as_uri(), type=types.FileChangeType.Created)]))
    await asyncio.wait_for(client.events.ready.wait(), 20)
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="run"))
    assert not any(s.name == "run" for s in found)
