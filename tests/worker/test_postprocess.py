"""Post-processing of model text at a cursor, and the FIM windows the server cuts around it."""

from lsp.completion import build_request
from lsp.postprocess import finish_completion


def test_a_blank_line_may_get_several_statements_but_not_the_dedented_rest():
    prefix = "def main():\n    value = 1\n    "
    raw = "total = value + 1\n    print(total)\n\ndef other():\n    pass"
    assert finish_completion(raw, prefix, "\n") == "total = value + 1\n    print(total)"


def test_after_text_on_the_line_only_the_line_and_its_block_are_kept():
    prefix = "def main():\n    if ready:"
    raw = "\n        go()\n        stop()\n    value = 2\n"
    assert finish_completion(raw, prefix, "") == "\n        go()\n        stop()"
    assert finish_completion("lpha = 1\nbeta = 2", "a", "") == "lpha = 1"  # a mid-line start ends with its statement
    assert finish_completion(" = {\n    'a': 1,\n}\nz = 3", "x", "") == " = {\n    'a': 1,\n}"


def test_overlap_with_the_rest_of_the_line_is_trimmed():
    assert finish_completion("a, b)", "print(", ")") == "a, b"
    assert finish_completion("name]):", "if x in (data[", "]):") == "name"
    assert finish_completion("count", "total = ", "\n") == "count"


def test_lines_repeating_the_suffix_are_dropped():
    prefix = "def f(x):\n    "
    raw = "y = x + 1\n    return y"
    assert finish_completion(raw, prefix, "\n    return y\n") == "y = x + 1"


def test_unmatched_closers_and_unfinished_tails_are_cut():
    assert finish_completion("value)\nmore", "x = ", "") == "value"
    prefix = "def f():\n    "
    raw = "call(a,\n    b,\n    c"  # cut off by max tokens: brackets never close
    assert finish_completion(raw, prefix, "") == "call(a,"


def test_empty_and_whitespace_results_give_nothing():
    assert finish_completion("", "x = ", "") == ""
    assert finish_completion("   \n\n  ", "x = ", "") == ""
    assert finish_completion(")", "x = ", "") == ""


def test_fim_windows_follow_whole_lines_and_the_cursor():
    text = "".join(f"line{i} = {i}\n" for i in range(2000))
    request = build_request(text, 1000, 4, "big.py", prefix_chars=300, suffix_chars=100)
    assert request.prefix.endswith("line1000"[:4]) and request.prefix.startswith("line")
    assert request.suffix.startswith("1000 = 1000\n") and request.suffix.endswith("\n")
    assert len(request.prefix) <= 300 and len(request.suffix) <= 100
    assert request.single_line and request.stop == ["\n"]  # text follows the cursor on its line
    at_end = build_request("def f():\n    return (\n", 1, 12, "f.py")
    assert (at_end.prefix, at_end.suffix, at_end.single_line) == ("def f():\n    return (", "\n", False)
    closers_only = build_request("x = foo()\n", 0, 8, "f.py")
    assert not closers_only.single_line


def test_a_decoding_loop_at_the_end_is_cut_to_one_copy():
    assert finish_completion("items.split('split('split('split('split('split('split('", "x = ", "") == "items.split('"
    looped = "total += 1\n    total += 1\n    total += 1\n    total += 1\n"
    assert finish_completion(looped, "def f():\n    ", "") == "total += 1"
    ruler = "# " + "-" * 40
    assert finish_completion(ruler, "x = 1\n", "") == ruler  # no letters or digits: not a loop
