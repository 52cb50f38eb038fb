"""The worker's `generate` op over the real socket, the chat-template detection behind `reasoning`, and the
edit checker and target finder the code actions rely on."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from inference import chat, protocol
from lsp.ai_targets import body_from_model, call_site, function_shape
from lsp.edit_check import apply_edits, check_edits
from lsp.index.model import Range
from tests.ai.conftest import THINKING_TEMPLATE
from tests.worker.conftest import greeted


def ask_stream(sock, frame) -> tuple[str, dict]:
    protocol.write_frame(sock, frame)
    text = ""
    while True:
        reply = protocol.read_frame(sock)
        if reply["op"] == "chunk":
            text += reply["text"]
        else:
            return text, reply


def test_hello_lists_reasoning_only_for_a_model_that_can(plain_worker, thinking_worker):
    for worker, can in ((plain_worker, False), (thinking_worker, True)):
        sock = worker.connect()
        protocol.write_frame(sock, protocol.hello(1))
        reply = protocol.read_frame(sock)
        assert "generate" in reply["capabilities"] and ("reasoning" in reply["capabilities"]) is can
        assert reply["model"]["reasoning"] is can


def test_generate_without_reasoning_is_a_fim_request(plain_worker):
    sock = greeted(plain_worker)
    frame = protocol.generate(3, path="a.py", prefix="def f(x):\n    return ", suffix="\n", max_tokens=6, stop=["\n"])
    text, done = ask_stream(sock, frame)
    assert done["op"] == "done" and done["id"] == 3 and text and "\n" not in text
    assert done["reasoning"] == {"requested": False, "used": False, "reason": "", "thought_chars": 0}


def test_reasoning_asked_of_a_model_that_cannot_says_why(plain_worker):
    sock = greeted(plain_worker)
    text, done = ask_stream(sock, protocol.generate(4, path="a.py", prefix="x = ", suffix="", max_tokens=4,
                                                    reasoning=True, instruction="finish the line"))
    assert text and done["reasoning"]["requested"] and not done["reasoning"]["used"]
    assert done["reasoning"]["reason"] == "the model has no chat template"


def test_reasoning_thinks_through_the_chat_template_then_answers(thinking_worker):
    sock = greeted(thinking_worker)
    frame = protocol.generate(5, path="a.py", prefix="x = ", suffix="\n", max_tokens=8, stop=["\n"], reasoning=True,
                              reasoning_budget=12, instruction="finish the line")
    text, done = ask_stream(sock, frame)
    assert done["reasoning"]["used"] and 0 < done["reasoning"]["thought_chars"]
    assert text and "\n" not in text and "<think>" not in text


@pytest.mark.parametrize("change, complaint", [
    ({"reasoning": 1}, "reasoning must be true or false"), ({"max_tokens": 0}, "max_tokens >= 1"),
    ({"reasoning_budget": -1}, "reasoning_budget >= 0"), ({"instruction": None}, "generate.instruction"),
    ({"stop": [3]}, "string stops")])
def test_bad_generate_frames_get_bad_frame_and_the_connection_goes_on(plain_worker, change, complaint):
    sock = greeted(plain_worker)
    frame = dict(protocol.generate(6, path="a.py", prefix="", suffix=""), **change)
    protocol.write_frame(sock, frame)
    reply = protocol.read_frame(sock)
    assert reply["op"] == "error" and reply["code"] == "bad_frame" and complaint in reply["message"]
    protocol.write_frame(sock, protocol.simple("stats", 7))
    assert protocol.read_frame(sock)["op"] == "stats"


def test_complete_frames_are_unchanged(plain_worker):
    sock = greeted(plain_worker)
    _, done = ask_stream(sock, protocol.complete(8, path="a.py", prefix="x = ", suffix="", max_tokens=3))
    assert done["op"] == "done" and "reasoning" not in done


def test_chat_template_detection(tmp_path):
    assert chat.find_reasoning_template(tmp_path) == (None, "the model has no chat template")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages[0].content }}"}))
    assert "has no thinking format" in chat.find_reasoning_template(tmp_path)[1]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": THINKING_TEMPLATE}))
    template, why = chat.find_reasoning_template(tmp_path)
    assert why == "" and template.render("hi").endswith("<|im_start|>assistant\n<think>\n")
    assert template.stops() == ["<|im_end|>"]
    assert chat.answer_code("Sure:\n```python\nreturn a + b\n```\nDone", ["\n"]) == "return a + b"
    assert chat.answer_code("value = 1<|im_end|>", ["<|im_end|>"]) == "value = 1"


def test_edit_checker_refuses_new_errors_and_accepts_clean_edits():
    text = "def f(a):\n    return a\n\n\ndef g():\n    pass\n"
    ok = check_edits("m.py", text, [(Range(5, 4, 5, 8), "return f(1)\n    # done")])
    assert ok.ok and ok.text.endswith("return f(1)\n    # done\n")
    bad = check_edits("m.py", text, [(Range(1, 11, 1, 12), "a +")])
    assert not bad.ok and bad.reason.startswith("the proposed edit does not parse (m.py:2:")
    assert not check_edits("m.txt", text, []).ok  # no grammar, no offer
    assert "overlapping" in check_edits("m.py", text, [(Range(0, 0, 0, 5), "x"), (Range(0, 2, 0, 3), "y")]).reason
    new, written = apply_edits("a\nb\nc\n", [(Range(2, 0, 2, 1), "C1\nC2"), (Range(0, 0, 0, 1), "A1\nA2")])
    assert new == "A1\nA2\nb\nC1\nC2\n" and written == [(0, 1), (3, 4)]
    ts = "function f(a: number): number {\n  // TODO: write\n}\n"
    assert not check_edits("m.ts", ts, [(Range(1, 0, 1, 16), "  return a +;")]).ok
    assert check_edits("m.ts", ts, [(Range(1, 0, 1, 16), "  return a + 1;")]).ok


def test_targets_stub_bodies_signatures_and_calls():
    py = 'class A:\n    def f(self, x):\n        """Doc."""\n        raise NotImplementedError\n\n' \
         'def g(a):\n    pass\n\ndef h():\n    return 1\n'
    f = function_shape("a.py", py, "python", Range(1, 8, 1, 9))
    assert f.stub and f.signature == "def f(self, x)" and f.body_range == Range(2, 18, 3, 33)
    assert function_shape("a.py", py, "python", Range(5, 4, 5, 5)).stub
    assert not function_shape("a.py", py, "python", Range(8, 4, 8, 5)).stub
    ts = 'function f(a: number): number {\n  // TODO\n}\nconst g = (x) => { throw new Error("not implemented"); };\n'
    assert function_shape("a.ts", ts, "typescript", Range(0, 9, 0, 10)).stub
    assert function_shape("a.ts", ts, "typescript", Range(3, 6, 3, 7)).stub
    go = "package m\n\nfunc F(a int) int {\n\tpanic(\"TODO\")\n}\n"
    shape = function_shape("m.go", go, "go", Range(2, 5, 2, 6))
    assert shape.stub and shape.indent == "\t" and shape.signature == "func F(a int) int"
    rs = "fn f(a: i32) -> i32 {\n    todo!()\n}\n"
    assert function_shape("m.rs", rs, "rust", Range(0, 3, 0, 4)).stub
    calls = "import util\nv = util.helper(1, 2)\nw = helper(3)\n"
    assert call_site("c.py", calls, "python", Range(1, 9, 1, 15)).text == "util.helper(1, 2)"
    assert call_site("c.py", calls, "python", Range(2, 4, 2, 10)).range == Range(2, 4, 2, 13)
    assert call_site("c.py", calls, "python", Range(0, 7, 0, 11)) is None  # an import is no call
    body = replace(f, indent="    ")
    assert body_from_model("a = 1\n    return a\ndef other():\n", body) == "    a = 1\n    return a"
    assert function_shape("a.py", py, "python", Range(5, 4, 5, 5)).body_range == Range(6, 0, 6, 8)  # whole line
