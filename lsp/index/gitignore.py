"""A gitignore matcher: patterns from nested .gitignore files, negation, directory-only patterns,
anchored patterns and `**`, with git's "last matching rule wins, deeper files override" order.

It only answers "is this path ignored?"; walking the tree is discovery.py's job.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class _Rule(NamedTuple):
    regex: re.Pattern
    negated: bool
    dir_only: bool


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**", i):
            before_ok = i == 0 or glob[i - 1] == "/"
            after = glob[i + 2 : i + 3]
            if before_ok and after == "/":
                out.append("(?:.*/)?")
                i += 3
                continue
            if before_ok and i + 2 == n:
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse_rules(lines: list[str]) -> list[_Rule]:
    """Compile gitignore lines (already split) into rules, skipping blanks and comments."""
    rules = []
    for raw in lines:
        line = raw.rstrip("\n").rstrip("\r")
        # trailing spaces are ignored unless escaped with a backslash
        while line.endswith(" ") and not line.endswith("\\ "):
            line = line[:-1]
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:]
        elif line.startswith("\\!") or line.startswith("\\#"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        body = _glob_to_regex(line)
        prefix = "" if anchored else "(?:.*/)?"
        rules.append(_Rule(re.compile(prefix + body + r"\Z", re.DOTALL), negated, dir_only))
    return rules


class IgnoreStack:
    """Rules from every .gitignore met so far, each bound to the directory that holds it."""

    def __init__(self) -> None:
        self._layers: list[tuple[str, list[_Rule]]] = []  # (base dir relative to root, rules)

    def add(self, base: str, lines: list[str]) -> None:
        rules = parse_rules(lines)
        if rules:
            self._layers.append((base.strip("/"), rules))

    def ignored(self, relpath: str, is_dir: bool) -> bool:
        """True when the last matching rule for `relpath` (relative to the root, "/"-separated)
        ignores it."""
        verdict = False
        for base, rules in self._layers:
            if base:
                if not relpath.startswith(base + "/"):
                    continue
                local = relpath[len(base) + 1 :]
            else:
                local = relpath
            for rule in rules:
                if rule.dir_only and not is_dir:
                    continue
                if rule.regex.match(local):
                    verdict = not rule.negated
        return verdict
