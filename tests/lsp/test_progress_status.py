"""The first index reports `$/progress` (begin, files done/total, end) and `msa/status` notifications."""

from lsprotocol import types

from tests.lsp.conftest import SHARED


@SHARED
async def test_progress_and_status_during_first_index(shared_client):
    client = shared_client
    [token] = [t for t in client.progress_reports if str(t).startswith("msa-index")]
    reports = client.progress_reports[token]
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    middle = [r for r in reports if isinstance(r, types.WorkDoneProgressReport)]
    assert middle and middle[-1].message.endswith("/8 files")
    statuses = client.events.statuses
    assert statuses[0]["index"]["state"] == "indexing"
    assert statuses[-1]["index"] == {"state": "ready", "files": 8, "done": 8}
    assert statuses[-1]["worker"]["state"] == "off"  # these sessions turn the model features off
    assert set(statuses[-1]["cache"]) == {"segments", "tokens", "filled"}
