"""The serving engine loads what the trainer writes and scores a file exactly as the training model does, in the
parallel layout (shared prefix, file at positions after the prefix, live tail at prefix + tail offset)."""

import shutil

import numpy as np
import pytest
import torch

from inference.training.batches import SEGMENT_CAP, file_segment_text, visibility
from inference.training.export import save_checkpoint
from inference.training.model import MSAForTraining
from tests.training.conftest import TOKENIZER


def _training_logprobs(model, tok, repo_file: tuple[str, str] | None, path: str, text: str, segment_names=False):
    prefix = tok.encode("<|repo_name|>repo\n").ids
    p = len(prefix)
    ids, pos, doc, tail = list(prefix), list(range(p)), [0] * p, [False] * p
    if repo_file:
        seg = tok.encode(file_segment_text(*repo_file, segment_names)).ids
        ids += seg
        pos += list(range(p, p + len(seg)))
        doc += [1] * len(seg)
        tail += [False] * len(seg)
    live = tok.encode(f"<|file_sep|>{path}\n{text}").ids
    start = len(ids)
    ids += live
    pos += list(range(p + SEGMENT_CAP, p + SEGMENT_CAP + len(live)))
    doc += [2] * len(live)
    tail += [True] * len(live)
    t = lambda a, dt: torch.as_tensor(np.asarray(a), dtype=dt)[None]
    T = len(ids)
    vis = visibility(t([0] * T, torch.long), t(doc, torch.long), t(tail, torch.bool), t([False] * T, torch.bool))
    with torch.no_grad():
        logits, _ = model(t(ids, torch.long), t(pos, torch.long), vis, sparse=True)
    logp = torch.log_softmax(logits[0].double(), -1)
    return [float(logp[start + i - 1, live[i]]) for i in range(1, len(live))]


@pytest.mark.parametrize("segment_names", [False, True], ids=["plain-headers", "names-lines"])
def test_engine_scores_like_the_training_model(tmp_path, tiny_config, tokenizer, segment_names):
    from inference.engine import Engine

    torch.manual_seed(0)
    tiny_config.max_position_embeddings = 4096
    model = MSAForTraining(tiny_config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    save_checkpoint(model, tmp_path, TOKENIZER, dtype=torch.float32, segment_names=segment_names)
    engine = Engine(str(tmp_path), device="cpu", dtype=torch.float32, layout="parallel", attention="sparse")
    other = ("pkg/util.py", "def scale(value):\n    return value * 3\n")
    text = "from pkg.util import scale\n\nprint(scale(4))\n"
    engine.sync(add=[(other[0], "h1", other[1])], drop=[])
    ours = _training_logprobs(model, tokenizer, other, "pkg/main.py", text, segment_names)
    if segment_names:  # the cached segment is the training row's, names line included
        assert engine.fim.file_header(*other) == "<|file_sep|>pkg/util.py\n# util: util.scale\n"
    theirs = [lp for _, _, lp in engine.score("pkg/main.py", text, 0, len(text))]
    header = len(tokenizer.encode("<|file_sep|>pkg/main.py\n").ids)
    ours = ours[header - 1:]  # the engine scores the text's tokens, not the header's
    assert len(theirs) == len(ours) > 5
    assert np.allclose(theirs, ours, atol=1e-4), np.abs(np.asarray(theirs) - np.asarray(ours)).max()
    alone = _training_logprobs(model, tokenizer, None, "pkg/main.py", text)
    assert not np.allclose(alone[header - 1:], ours, atol=1e-4), "the repository file must change the scores"


def test_engine_builds_the_fim_prompt_the_model_was_trained_on(tmp_path, tiny_config, tokenizer):
    """For each FIM order the trainer writes, the engine's prompt for a cursor is token for token the head of the
    training tail with the same split; "spm" puts the suffix first and ends with the prefix."""
    import random

    from inference.engine import Engine
    from inference.training.batches import Encoder, fim_tail

    tiny_config.max_position_embeddings = 4096
    model = MSAForTraining(tiny_config).eval()
    text = "def scale(value):\n    return value * 3\n\nprint(scale(4))\n"
    start = text.index("value * 3")
    end = text.index("\n", start)
    for order in ("psm", "spm"):
        folder = tmp_path / order
        save_checkpoint(model, folder, TOKENIZER, dtype=torch.float32, fim_order=order)
        engine = Engine(str(folder), device="cpu", dtype=torch.float32)
        assert engine.fim.order == order
        ours = engine._fim_ids("pkg/main.py", text[:start], text[end:], 512)
        ids, n_head, _ = fim_tail(Encoder(tokenizer), "pkg/main.py", text, random.Random(0), (start, end), order=order)
        assert ours == ids[:n_head].tolist()
        decoded = tokenizer.decode(ours, skip_special_tokens=False)
        assert decoded.endswith("return " if order == "spm" else "<|fim_middle|>")
