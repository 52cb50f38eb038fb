"""Chat templates with a thinking format: finding one in a model directory and building reasoning prompts.

A model can reason before it answers when its chat template (``chat_template`` in tokenizer_config.json, or
chat_template.jinja) has a thinking block such as Qwen3's or DeepSeek-R1's ``<think> ... </think>``. The
template is rendered with a sandboxed Jinja environment, as Hugging Face's ``apply_chat_template`` does, with
``enable_thinking=True``. The answer's code is taken from its first fenced block.

Non-job: running the model (inference.engine) and deciding when to reason (the language server decides).
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
HOLE = "<HOLE>"
PREFIX_CHARS, SUFFIX_CHARS = 4000, 1500
END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<｜end▁of▁sentence｜>")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)


@dataclass(frozen=True)
class ReasoningTemplate:
    source: str  # the Jinja text
    origin: str  # where it was found, for messages

    def render(self, user: str) -> str:
        """The prompt up to the start of the model's thinking (ends with the opening think tag)."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        text = env.from_string(self.source).render(
            messages=[{"role": "user", "content": user}], add_generation_prompt=True, enable_thinking=True,
            bos_token="", eos_token="", raise_exception=_raise)
        stripped = text.rstrip()
        if stripped.endswith(THINK_OPEN):
            return stripped + "\n"
        return text + THINK_OPEN + "\n"

    def stops(self) -> list[str]:
        return [marker for marker in END_MARKERS if marker in self.source] or list(END_MARKERS[:2])


def _raise(message):
    raise ValueError(f"chat template: {message}")


def find_reasoning_template(model_dir: str | pathlib.Path) -> tuple[ReasoningTemplate | None, str]:
    """(template, "") when the model's chat template has a thinking format; else (None, why not)."""
    directory = pathlib.Path(model_dir)
    source, origin = None, ""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        source, origin = jinja.read_text(encoding="utf-8"), jinja.name
    else:
        config = directory / "tokenizer_config.json"
        if config.is_file():
            try:
                raw = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
            except (OSError, ValueError) as exc:
                return None, f"tokenizer_config.json is unreadable ({exc})"
            if isinstance(raw, list):  # named templates: [{"name": "default", "template": ...}, ...]
                raw = next((t.get("template") for t in raw if isinstance(t, dict) and t.get("name") == "default"), None)
            if isinstance(raw, str):
                source, origin = raw, "tokenizer_config.json"
    if source is None:
        return None, "the model has no chat template"
    if THINK_OPEN not in source and "enable_thinking" not in source:
        return None, f"the model's chat template ({origin}) has no thinking format"
    try:
        ReasoningTemplate(source, origin).render("test")
    except Exception as exc:  # a template that cannot render is no template
        return None, f"the model's chat template ({origin}) does not render: {exc}"
    return ReasoningTemplate(source, origin), ""


def user_message(instruction: str, path: str, prefix: str, suffix: str) -> str:
    """The request as one user turn: the instruction and the file around the part to write, marked HOLE."""
    before = prefix[-PREFIX_CHARS:]
    after = suffix[:SUFFIX_CHARS]
    return (f"{instruction.strip() or 'Write the missing code.'}\n\n"
            f"File `{path}` (the part to write is marked {HOLE}):\n```\n{before}{HOLE}{after}\n```\n"
            f"Answer with only the code that replaces {HOLE}, in one fenced code block.")


def answer_code(answer: str, stops: list[str]) -> str:
    """The code of an answer: its first fenced block (else the whole answer), cut at the first stop."""
    found = _FENCE.search(answer)
    code = found.group(1) if found else answer.strip("\n")
    if code.endswith("\n") and found:
        code = code[:-1]
    for stop in stops:
        if stop and stop in code:
            code = code[: code.index(stop)]
    return code
