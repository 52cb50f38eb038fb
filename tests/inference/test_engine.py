"""Engine behaviour a caller sees: sampling, stop rules, cancellation, tail reuse, FIM formats, errors."""

from __future__ import annotations

import pytest

from tests.inference.conftest import repo_files
from inference import fim
from inference.engine import BUNDLED_DIR, Engine

PREFIX, SUFFIX = "import os\n\ndef total(x):\n    return ", "\n\nprint(total(3))\n"


@pytest.fixture(scope="module")
def engine(tiny_models):
    e = Engine(str(tiny_models["qwen2"]))
    e.sync(repo_files(3), [])
    return e


def _run(engine, **kw):
    return "".join(engine.complete("pkg/live.py", PREFIX, SUFFIX, **kw))


def test_info_describes_the_model(engine):
    info = engine.info()
    assert info["family"] == "qwen2" and info["fim_format"] == "qwen" and info["layout"] == "parallel"
    assert info["params"] > 0 and info["window"] == 4096 and len(info["fingerprint"]) == 32


def test_seeded_sampling_is_reproducible_and_greedy_is_deterministic(engine):
    a = _run(engine, max_tokens=8, temperature=1.0, top_p=0.9, top_k=50, seed=7)
    ids_a = list(engine.last_ids)
    b = _run(engine, max_tokens=8, temperature=1.0, top_p=0.9, top_k=50, seed=7)
    assert (a, ids_a) == (b, engine.last_ids)
    others = set()
    for seed in range(4):
        _run(engine, max_tokens=8, temperature=1.5, seed=seed)
        others.add(tuple(engine.last_ids))
    assert len(others) > 1
    assert _run(engine, max_tokens=8) == _run(engine, max_tokens=8)


def test_max_tokens_and_stop_sequences(engine):
    _run(engine, max_tokens=5, temperature=1.0, seed=1)
    assert engine.last_stats["generated_tokens"] <= 5
    seed, full = next((s, t) for s in range(50) if len(t := _run(engine, max_tokens=12, temperature=1.0, seed=s)) >= 8)
    stop = full[4:6]
    cut = _run(engine, max_tokens=12, temperature=1.0, seed=seed, stop=[stop])
    assert cut == full[: full.index(stop)]
    assert engine.last_stats["finish"] == "stop_sequence"


def test_should_stop_cancels_within_one_step(engine):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 2

    _run(engine, max_tokens=30, temperature=1.0, seed=0, should_stop=should_stop)
    assert engine.last_stats["finish"] == "cancelled"
    assert engine.last_stats["generated_tokens"] <= 2


def test_typing_reuses_the_tail_and_gives_the_fresh_result(tiny_models, engine):
    _run(engine, max_tokens=4)
    more = "".join(engine.complete("pkg/live.py", PREFIX + "x", SUFFIX, max_tokens=4))
    assert engine.last_stats["reused_tail_tokens"] > 0
    assert engine.last_stats["prefilled_tokens"] < engine.last_stats["prompt_tokens"]
    fresh = Engine(str(tiny_models["qwen2"]))
    fresh.sync(repo_files(3), [])
    assert "".join(fresh.complete("pkg/live.py", PREFIX + "x", SUFFIX, max_tokens=4)) == more


def test_live_file_stale_segment_is_masked(tiny_models):
    e = Engine(str(tiny_models["qwen2"]), attention="dense")
    files = repo_files(3)
    e.sync(files, [])
    path = files[1][0]
    with_file = e.repo.view(None).n_tokens
    assert e.repo.view(path).n_tokens < with_file


def test_bad_arguments_fail_clearly(engine):
    with pytest.raises(ValueError, match="temperature"):
        engine.complete("a.py", "", "", temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        engine.complete("a.py", "", "", top_p=0)
    with pytest.raises(ValueError, match="span"):
        engine.score("a.py", "abc", 2, 9)
    with pytest.raises(ValueError, match="layout"):
        Engine(engine.model_dir, layout="diagonal")


def test_fim_format_follows_the_tokenizer():
    qwen = {t: i for i, t in enumerate(fim.QWEN_TOKENS.values())}
    assert fim.detect(qwen).name == "qwen"
    assert fim.detect(qwen, has_index_branch=True).name == "msa"
    assert fim.detect({"<fim_prefix>": 1, "<fim_suffix>": 2, "<fim_middle>": 3}).name == "starcoder"
    assert fim.detect({"a": 1}).name == "none"
    tail = "".join(text for _, text in fim.FORMATS["starcoder"].tail("p.py", "a", "b"))
    assert tail == "<file_sep>p.py\n<fim_prefix>a<fim_suffix>b<fim_middle>"
    msa = "".join(text for _, text in fim.FORMATS["msa"].tail("p.py", "a", "b"))
    assert msa == "<|file_sep|>p.py\n<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"


@pytest.mark.skipif((BUNDLED_DIR / "config.json").is_file(), reason="a bundled model is installed")
def test_missing_bundled_model_says_to_pass_model():
    with pytest.raises(FileNotFoundError, match="--model"):
        Engine(None)


@pytest.mark.skipif(not (BUNDLED_DIR / "config.json").is_file(), reason="no bundled model installed")
def test_bundled_model_loads_with_its_index_branch_and_completes():
    engine = Engine(None)
    info = engine.info()
    assert info["fim_format"] == "msa" and info["index_branch"]
    engine.sync([("pkg/a.py", "a", "def greet(name):\n    return 'hello ' + name\n")], [])
    list(engine.complete("pkg/b.py", "from pkg.a import greet\n\nprint(", ")\n", max_tokens=4))
    assert engine.last_stats["prompt_tokens"] > 0 and engine.last_stats["ttft_ms"] is not None


def test_a_partly_typed_word_is_retyped_by_the_model_and_never_echoed(engine):
    """The prompt ends inside a name: the model re-types its letters (the prompt is cut at the word's start) and
    the editor gets only what follows the cursor."""
    prefix, typed = "import os\n\ndef total(x):\n    return os.pa", "pa"
    for seed in range(4):
        out = "".join(engine.complete("pkg/live.py", prefix, SUFFIX, max_tokens=8, temperature=1.5, seed=seed))
        generated = engine.tok.decode(engine.last_ids)
        assert generated.startswith(typed) or typed.startswith(generated), repr(generated)
        assert out == generated[len(typed):].rstrip("\ufffd")


def test_healing_cuts_whitespace_or_else_the_last_word():
    from inference.healing import TokenHealer

    heal = TokenHealer(None)
    assert heal.split("return types.co") == ("return types.", "co")
    assert heal.split("x = 1\n    ") == ("x = 1", "\n    ")
    assert heal.split("value_2") == ("value_2", "")  # the whole prompt is one word: nothing to cut back to
    assert heal.split("f(") == ("f(", "")


def test_trailing_whitespace_is_retyped_by_the_model_and_never_echoed(engine):
    prefix, cut = "def total(x):", "\n    "
    for seed in range(4):
        out = "".join(engine.complete("pkg/live.py", prefix + cut, SUFFIX, max_tokens=8, temperature=1.5, seed=seed))
        generated = engine.tok.decode(engine.last_ids)
        assert generated.startswith(cut) or cut.startswith(generated), repr(generated)
        assert out == generated[len(cut):].rstrip("\ufffd")  # an unfinished UTF-8 character is held back
