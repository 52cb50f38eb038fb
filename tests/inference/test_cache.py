"""The repository KV cache: exactness of its layouts and of MSA selection, edit costs, persistence, eviction."""

from __future__ import annotations

import pathlib

import pytest
import torch

from tests.inference.conftest import repo_files
from inference.engine import Engine
from inference.kv_cache import CacheBudgetError

SNIPPET = "from pkg.mod1 import f1_3\n\nvalue = f1_3(2) + f0_1(5)\n"


def _score(engine, text=SNIPPET, path="pkg/new.py"):
    return torch.tensor([lp for _, _, lp in engine.score(path, text, 0, len(text))])


@pytest.mark.parametrize("model", ["training_free", "index_branch"])
def test_sparse_with_k_covering_every_block_equals_dense(tiny_models, msa_model, model):
    path = str(tiny_models["qwen2"] if model == "training_free" else msa_model)
    files = repo_files(5)
    dense = Engine(path, attention="dense", segment_cap=200)
    sparse = Engine(path, attention="sparse", top_k_blocks=64, segment_cap=200)
    dense.sync(files, [])
    info = sparse.sync(files, [])
    assert info["segments"] > len(files)  # long files were split into parts
    blocks = sparse.stats()["pages"]
    assert blocks + 1 <= 64
    torch.testing.assert_close(_score(sparse), _score(dense), atol=1e-4, rtol=1e-4)
    few = Engine(path, attention="sparse", top_k_blocks=4, segment_cap=200)
    few.sync(files, [])
    "".join(few.complete("pkg/new.py", SNIPPET, "", max_tokens=2))
    assert few.last_stats["repo_blocks"] > 4
    assert few.last_stats["selected_blocks"] == 3  # top-3 repository blocks per group + the tail's local block
    assert not torch.allclose(_score(few), _score(dense), atol=1e-4)


def test_sequential_dense_equals_one_causal_forward(tiny_models):
    from transformers import AutoModelForCausalLM

    engine = Engine(str(tiny_models["llama"]), layout="sequential", attention="dense")
    files = repo_files(4)
    engine.sync(files, [])
    got = _score(engine)
    tok, fmt = engine.tok, engine.fim
    ids = tok.encode(fmt.repo_prefix("repo"))
    for path, _, text in files:
        ids += tok.encode(fmt.file_header(path, text) + text)
    tail = tok.encode(fmt.file_header("pkg/new.py") + SNIPPET)
    hf = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = hf(torch.tensor([ids + tail])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    header_len = len(tok.encode(fmt.file_header("pkg/new.py")))
    want = torch.tensor([float(logprobs[len(ids) + i - 1, tail[i]]) for i in range(header_len, len(tail))])
    assert len(ids) > 4 * 128  # several pages of repository
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_one_line_edit_reprefills_only_that_file_in_parallel(tiny_models):
    engine = Engine(str(tiny_models["qwen2"]))
    files = repo_files(5)
    first = engine.sync(files, [])
    path, _, text = files[2]
    edited = text.replace("return x * 3 + 2", "return x * 3 - 2", 1)
    assert edited != text
    second = engine.sync([(path, "h2b", edited)], [])
    assert second["prefilled_tokens"] == len(engine.tok.encode(engine.fim.file_header(path, edited) + edited))
    assert second["reused_segments"] == first["segments"]  # the prefix and the four other files
    assert second["segments"] == first["segments"]
    undo = engine.sync([(path, "h2", text)], [])  # the old version comes back from host memory
    assert undo["prefilled_tokens"] == 0


@pytest.mark.parametrize("layout", ["sequential", "offsets"])
def test_edit_in_sequential_or_offsets_invalidates_the_files_after_it(tiny_models, layout):
    engine = Engine(str(tiny_models["qwen2"]), layout=layout)
    files = repo_files(4)
    engine.sync(files, [])
    path, _, text = files[1]
    info = engine.sync([(path, "x", text + "# edited\n")], [])
    # the edited file moves last; files 2 and 3 follow file 0 now, so they and the edit are prefilled again
    expect = sum(len(engine.tok.encode(engine.fim.file_header(p, t) + t)) for p, _, t in files[2:])
    expect += len(engine.tok.encode(engine.fim.file_header(path, text + "# edited\n") + text + "# edited\n"))
    assert info["prefilled_tokens"] == expect


def test_restarted_engine_reuses_the_disk_cache(tiny_models, tmp_path):
    files = repo_files(4)
    first = Engine(str(tiny_models["qwen3"]), cache_dir=str(tmp_path))
    assert first.sync(files, [])["prefilled_tokens"] > 0
    want = "".join(first.complete("pkg/new.py", SNIPPET, "", max_tokens=6))
    again = Engine(str(tiny_models["qwen3"]), cache_dir=str(tmp_path))
    info = again.sync(files, [])
    assert info["prefilled_tokens"] == 0
    assert info["loaded_from_disk"] == len(files)
    assert "".join(again.complete("pkg/new.py", SNIPPET, "", max_tokens=6)) == want
    assert again.last_ids == first.last_ids


def test_corrupt_or_foreign_cache_files_are_rebuilt(tiny_models, tmp_path):
    files = repo_files(3)
    Engine(str(tiny_models["qwen3"]), cache_dir=str(tmp_path)).sync(files, [])
    stored = sorted(pathlib.Path(tmp_path).glob("*/*.safetensors"), key=lambda p: p.stat().st_size)
    assert len(stored) == 4  # prefix + 3 files
    victim, donor = stored[-1], stored[-2]
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF  # flip a byte inside the KV
    victim.write_bytes(bytes(data))
    donor_copy = donor.read_bytes()
    engine = Engine(str(tiny_models["qwen3"]), cache_dir=str(tmp_path))
    info = engine.sync(files, [])
    assert engine.stats()["disk"]["rejected"] == 1
    assert info["loaded_from_disk"] == 2 and info["prefilled_tokens"] > 0
    stored[-3].write_bytes(donor_copy)  # another segment's file under this key: metadata says so
    engine = Engine(str(tiny_models["qwen3"]), cache_dir=str(tmp_path))
    engine.sync(files, [])
    assert engine.stats()["disk"]["rejected"] == 1


def test_cache_from_another_model_is_not_used(tiny_models, tmp_path):
    files = repo_files(2)
    Engine(str(tiny_models["qwen2"]), cache_dir=str(tmp_path)).sync(files, [])
    other = Engine(str(tiny_models["llama"]), cache_dir=str(tmp_path))
    assert other.sync(files, [])["loaded_from_disk"] == 0


def test_device_budget_evicts_least_recently_used_segments_to_host(tiny_models):
    files = repo_files(4)
    roomy = Engine(str(tiny_models["qwen2"]))
    roomy.sync(files, [])
    need = roomy.stats()["bytes"]
    tight = Engine(str(tiny_models["qwen2"]), device_max_bytes=need)
    tight.sync(files, [])
    tight.sync([("pkg/extra.py", "e", "x = 1\n" * 200)], [])  # does not fit beside the rest
    assert tight.stats()["evictions"] > 0
    assert tight.stats()["host_bytes"] > 0
    with pytest.raises(CacheBudgetError, match="budget"):
        tight.complete("pkg/new.py", SNIPPET, "", max_tokens=1).__next__()
    tight.sync([], ["pkg/extra.py"])
    roomy.sync([], [])
    assert "".join(tight.complete("pkg/new.py", SNIPPET, "", max_tokens=4)) == \
        "".join(roomy.complete("pkg/new.py", SNIPPET, "", max_tokens=4))


def test_disk_cache_stays_under_its_size_cap(tiny_models, tmp_path):
    files = repo_files(4)
    Engine(str(tiny_models["qwen3"]), cache_dir=str(tmp_path)).sync(files, [])
    sizes = sorted(p.stat().st_size for p in pathlib.Path(tmp_path).glob("*/*.safetensors"))
    cap = sum(sizes[-2:])  # room for about two segments
    engine = Engine(str(tiny_models["qwen3"]), cache_dir=str(tmp_path / "capped"), cache_max_bytes=cap)
    engine.sync(files, [])
    assert 0 < engine.stats()["disk"]["bytes"] <= cap
    assert len(list((tmp_path / "capped").glob("*/*.safetensors"))) < len(files) + 1
