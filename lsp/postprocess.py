"""Turns raw model text at a cursor into a completion worth showing: scope, suffix overlap, brackets, emptiness.

`finish_completion(raw, prefix, suffix)` applies, in order: keep one copy of a unit repeated at the end (a decoding
loop); stop at the end of the block or indentation level the cursor is in; cut at a closing bracket that closes nothing; drop trailing lines that repeat the text after the
cursor and trim an overlap with the rest of the cursor's line; cut an unfinished multi-line tail back to the last
line where the brackets balance; strip trailing whitespace. An empty result means "offer nothing".

Non-job: no I/O, no LSP types, no model calls; language-agnostic heuristics on text only.
"""

from __future__ import annotations

OPENERS, CLOSERS = "([{", ")]}"
MATCH = dict(zip(CLOSERS, OPENERS))
MIN_OVERLAP = 3  # shorter suffix overlaps are trimmed only when they are the whole rest of the line


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _strip_strings(line: str) -> str:
    """The line with quoted strings and a trailing # or // comment blanked out (bracket counting only)."""
    out, quote, i = [], "", 0
    while i < len(line):
        char = line[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = ""
            out.append(" ")
        elif char in "\"'`":
            quote = char
            out.append(" ")
        elif char == "#" or line.startswith("//", i):
            break
        else:
            out.append(char)
        i += 1
    return "".join(out)


def open_brackets(text: str, max_lines: int = 200) -> list[str]:
    """Brackets left open at the end of `text` (looking at its last max_lines lines)."""
    stack: list[str] = []
    for line in text.split("\n")[-max_lines:]:
        for char in _strip_strings(line):
            if char in OPENERS:
                stack.append(char)
            elif char in CLOSERS:
                if stack and stack[-1] == MATCH[char]:
                    stack.pop()
                else:
                    stack.clear()  # a closer for something older than the window: start afresh
    return stack


def limit_scope(completion: str, prefix: str) -> str:
    """Keep the lines that stay inside the cursor's block.

    On a blank line the completion may write several statements at the cursor's indentation and stops before a
    line indented less. After text on the cursor's line it may finish that line and its nested block (deeper
    lines), plus one closing-bracket line back at the line's indentation, and stops before anything else.
    """
    current = prefix.rsplit("\n", 1)[-1]
    blank_line = not current.strip()
    base = len(current) if blank_line else _indent(current)
    lines = completion.split("\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if not line.strip():
            kept.append(line)
            continue
        depth = _indent(line)
        if depth > base or (blank_line and depth == base):
            kept.append(line)
            continue
        if depth == base and line.lstrip()[0] in CLOSERS:
            kept.append(line)
        break
    return "\n".join(kept)


def cut_unmatched_closer(completion: str, prefix: str) -> str:
    """Cut the completion before a closing bracket that matches nothing open in the prefix or the completion."""
    stack = open_brackets(prefix)
    offset = 0
    for line in completion.split("\n"):
        clean = _strip_strings(line)
        for column, char in enumerate(clean):
            if char in OPENERS:
                stack.append(char)
            elif char in CLOSERS:
                if stack and stack[-1] == MATCH[char]:
                    stack.pop()
                else:
                    return completion[:offset + column]
        offset += len(line) + 1
    return completion


def trim_suffix_overlap(completion: str, suffix: str) -> str:
    """Drop what the text after the cursor already has: repeated leading suffix lines, then a line-end overlap."""
    suffix_lines = [line.strip() for line in suffix.split("\n")]
    suffix_lines = [line for line in suffix_lines if line][:20]
    lines = completion.split("\n")
    for count in range(min(len(lines) - 1, len(suffix_lines)), 0, -1):
        tail = [line.strip() for line in lines[-count:]]
        if tail == suffix_lines[:count]:
            completion = "\n".join(lines[:-count]).rstrip()
            break
    rest_of_line = suffix.split("\n", 1)[0]
    first_line = completion.split("\n", 1)[0]
    if rest_of_line.strip() and "\n" not in completion:
        for size in range(min(len(rest_of_line), len(first_line)), 0, -1):
            overlap = rest_of_line[:size]
            if first_line.endswith(overlap) and (size >= MIN_OVERLAP or not rest_of_line[size:].strip()):
                return completion[: len(completion) - size]
        stripped = rest_of_line.strip()
        if first_line.rstrip().endswith(stripped):
            return completion.rstrip()[: -len(stripped)]
    return completion


def balance_tail(completion: str, prefix: str) -> str:
    """If a multi-line completion ends with brackets it opened still open, cut back to the last balanced line."""
    if "\n" not in completion:
        return completion
    base = len(open_brackets(prefix))
    stack = list(open_brackets(prefix))
    lines = completion.split("\n")
    balanced_upto = 0
    for number, line in enumerate(lines):
        for char in _strip_strings(line):
            if char in OPENERS:
                stack.append(char)
            elif char in CLOSERS and stack and stack[-1] == MATCH[char]:
                stack.pop()
        if len(stack) <= base:
            balanced_upto = number + 1
    if len(stack) <= base:
        return completion
    return "\n".join(lines[: max(balanced_upto, 1)])


def cut_repetition(completion: str, max_period: int = 64, min_repeats: int = 3, min_chars: int = 24) -> str:
    """Keep one copy of a unit the completion repeats back to back at its end (a decoding loop).

    Only units with a letter or digit count, so rulers such as "--------" survive.
    """
    for period in range(1, max_period + 1):
        if len(completion) < period * min_repeats:
            break
        unit = completion[-period:]
        if not any(char.isalnum() for char in unit):
            continue
        start = len(completion) - period
        while start >= period and completion[start - period:start] == unit:
            start -= period
        repeats = (len(completion) - start) // period
        if repeats >= min_repeats and repeats * period >= min_chars:
            while start > 0 and completion[start - 1] == completion[start - 1 + period]:
                start -= 1  # the loop began part-way into a unit
            return completion[: start + period]
    return completion


def finish_completion(raw: str, prefix: str, suffix: str) -> str:
    """The text to offer at the cursor, or "" when nothing useful is left."""
    text = cut_repetition(raw.replace("\r\n", "\n"))
    text = limit_scope(text, prefix)
    text = cut_unmatched_closer(text, prefix)
    text = trim_suffix_overlap(text, suffix)
    text = balance_tail(text, prefix)
    text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
    return text if text.strip() else ""
