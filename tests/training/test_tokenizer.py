"""The bundled byte-level BPE tokenizer: size, special tokens, lossless round trip."""

from inference.training.tokenizer import SPECIAL_TOKENS, VOCAB_SIZE


def test_vocabulary_is_at_most_16k_with_special_tokens_first(tokenizer):
    assert tokenizer.get_vocab_size() <= VOCAB_SIZE
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


def test_special_tokens_encode_as_single_ids(tokenizer):
    text = "<|repo_name|>demo\n<|file_sep|>a/b.py\n<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>1<|endoftext|>"
    ids = tokenizer.encode(text).ids
    for token in ["<|repo_name|>", "<|file_sep|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"]:
        assert ids.count(tokenizer.token_to_id(token)) == 1
    assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_round_trip_is_lossless_for_code_whitespace_and_unicode(tokenizer):
    samples = [
        "def f(x):\n\tif x:\n        return 'é✓😀'\n\n\n",
        "fn main() { let s = \"日本語\"; println!(\"{}\", s); }\r\n",
        "const a = `${b}`;   \n// trailing spaces   ",
        "\x00\x1f odd bytes \u2028 line sep",
    ]
    for text in samples:
        assert tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=False) == text


def test_code_is_compressed_well(tokenizer):
    code = "import os\n\n\ndef read_config(path):\n    with open(path) as handle:\n        return handle.read()\n" * 5
    assert len(code) / len(tokenizer.encode(code).ids) > 3.0
