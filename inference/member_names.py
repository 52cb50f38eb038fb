"""Completing a repository module's member: after `helpers.` (or `engine::`), where the live file imports
`helpers` and a repository file is the module `helpers`, the first name the model writes is held to the names
that module defines, so that the completion calls a function that exists.

The modules come from the repository's files as the cache holds them (inference/file_summary.py gives each file's
qualifier and top-level public names; files sharing a qualifier, such as a Go package's files, pool their names;
a Python package's __init__.py also lends the names it imports and its folder's module stems).  A member site is
a prompt ending in `qualifier.` or `qualifier::` where the qualifier stands on an import line of the live file
(`import`, `from`, `use`, `require(`, a Go import path), in the prompt or in the file as the repository last
synced it (a prompt's window may start below the imports), and not bound as a local name (an assignment, a loop
variable, a parameter) in the top-level definition the cursor is in.  While the name is being written, the tokens
that would leave every module name are masked out, and once the name begun can only be one of them, its rest is
written in the longest tokens that spell it.  The summary can miss members (a Go `const (` block, a re-export, an
attribute set at run time), so at the name's first token, when the model's choice starts an identifier the module's
source spells but does not list, and nothing listed is near it (MAX_DEFICIT nats), the model writes freely; a
module that re-exports wholesale (`import *`) holds no names.  A name begun is finished.  Not its job: sampling, or the
symbol index of the language server (lsp/index/).
"""

from __future__ import annotations

import bisect
import re

import torch

from inference.file_summary import qualifier, top_level_names
from inference.healing import is_word

CANDIDATES = 512  # the model's likeliest tokens that are checked at each step of a name
MAX_PIECE = 32  # characters of the longest token text looked up when one name is left
SITE_CHARS = 256  # characters at the prompt's end searched for `qualifier.` (qualifiers up to 255 long)
MAX_DEFICIT = 8.0  # nats: a fitting token this much less likely than the model's choice lets the model write freely
_SITE = re.compile(r"(?<![\w$])([A-Za-z_$][\w$]*)(\.|::)$")
_PY_IMPORTED = re.compile(r"^(?:from[ \t]+\S+[ \t]+)?import[ \t]+(.+)$", re.M)
_WORD = re.compile(r"[A-Za-z_$][\w$]*")
_STAR = re.compile(r"^[ \t]*(?:from[ \t]+\S+[ \t]+import[ \t]+\*|export[ \t]+\*|pub[ \t]+use[ \t].*::\*)", re.M)
_IMPORT_LINE = re.compile(r"^[ \t]*(?:import|from|use|pub[ \t]+use)\b.*$|^.*\brequire\(.*$"
                          r"|^[ \t]*(?:[\w.]+[ \t]+)?\"[^\"\n]*\"[ \t]*$", re.M)


def _word_end(text: str) -> int | None:
    """Index of the first character of `text` that is not an identifier's, None when there is none."""
    return next((i for i, ch in enumerate(text) if not is_word(ch)), None)


def _imports(text: str, name: str) -> bool:
    """`text` names `name` on an import line."""
    word = re.escape(name)
    return re.search(rf"^[ \t]*(?:import|from|use|pub[ \t]+use)\b.*(?<![\w$]){word}(?![\w$])"
                     rf"|\brequire\(.*(?<![\w$]){word}(?![\w$])"
                     rf"|^[ \t]*(?:[\w.]+[ \t]+)?\"[^\"\n]*(?<![\w$]){word}\"[ \t]*$", text, re.M) is not None


_TOP_LEVEL = re.compile(r"^(?:async[ \t]+)?(?:def|class|func|function|fn|pub|impl|export)\b.*$", re.M)


def _rebound(prompt: str, name: str) -> bool:
    """The prompt binds `name` as a local name (an assignment, a loop or `as` target, a parameter) within the
    top-level definition the cursor is in, import lines aside: there `name.` is that variable, not the module."""
    starts = [m.start() for m in _TOP_LEVEL.finditer(prompt)]
    scope = _IMPORT_LINE.sub("", prompt[starts[-1] if starts else 0:])
    word = rf"(?<![\w$.]){re.escape(name)}(?![\w$])"
    assignment = rf"^[ \t]*(?:[\w$]+[ \t]*,[ \t]*)*{word}[ \t]*(?::[^=\n]+)?(?::=|=(?!=))"
    declaration = rf"\b(?:let|const|var|for)[ \t]+(?:mut[ \t]+)?(?:[\w$]+[ \t]*,[ \t]*)*{word}|\bas[ \t]+{word}"
    parameter = (rf"^[ \t]*(?:async[ \t]+)?(?:def|func|function|fn|lambda)\b[^\n]*[(,][ \t]*{word}"
                 rf"[ \t]*(?:[:,)=]|[ \t][\w*\[])")
    return re.search(f"{assignment}|{declaration}|{parameter}", scope, re.M) is not None


class ModuleNames:
    """qualifier word -> the names its repository module(s) define, and every identifier their source spells, kept in
    step with the repository.  A module that re-exports another's names wholesale (`import *`, `export *`) is open:
    no names are held for it."""

    def __init__(self):
        self._files: dict[str, tuple[str, set[str], set[str], bool]] = {}  # path -> (qualifier, names, spelled, open)
        self._paths: dict[str, set[str]] = {}  # qualifier -> the paths that have it
        self._import_lines: dict[str, str] = {}  # path -> its import lines, as last synced
        self._merged: dict[str, tuple[list[str], list[str]]] = {}  # qualifier -> (names, spelled), as looked up

    def update(self, add: list[tuple[str, str]], drop: list[str]) -> None:
        """add: [(path, text)]; drop: [path]."""
        for path in [*drop, *(path for path, _ in add)]:
            self._import_lines.pop(path, None)
            old = self._files.pop(path, None)
            if old is not None:
                self._paths[old[0]].discard(path)
                self._merged.pop(old[0], None)
            self._merged.pop(path.rsplit("/", 2)[-2] if path.count("/") else "", None)  # its package's modules
        for path, text in add:
            self._import_lines[path] = "\n".join(m.group(0) for m in _IMPORT_LINE.finditer(text))
            lead = qualifier(path, text)
            if lead is None:
                continue
            names = set(top_level_names(path, text))
            if path.endswith("__init__.py"):
                for found in _PY_IMPORTED.finditer(text):
                    names.update(n for n in re.findall(r"(?:\bas[ \t]+)?([A-Za-z]\w*)", found.group(1)) if n != "as")
            lead = lead.rstrip(".:")
            self._files[path] = (lead, names, set(_WORD.findall(text)), bool(_STAR.search(text)))
            self._paths.setdefault(lead, set()).add(path)
            self._merged.pop(lead, None)

    def _lookup(self, word: str) -> tuple[list[str], list[str]]:
        if word not in self._merged:
            names, spelled, open_ended = set(), set(), False
            for path in self._paths.get(word, ()):
                _, defined, words, star = self._files[path]
                names |= defined
                spelled |= words
                open_ended |= star
                if path.endswith("__init__.py") and "/" in path:  # the package's modules are members too
                    folder = path[: -len("__init__.py")]
                    names.update(p[len(folder):].split("/", 1)[0].removesuffix(".py") for p in self._files
                                 if p.startswith(folder) and p != path)
            names.discard("")
            self._merged[word] = ([], []) if open_ended else (sorted(names), sorted(spelled | names))
        return self._merged[word]

    def names(self, word: str) -> list[str]:
        """Sorted names of the modules called `word` ([] when no repository module is, or one is open)."""
        return self._lookup(word)[0]

    def site(self, prompt: str, path: str | None = None) -> tuple[list[str], list[str]]:
        """(the names a member written right after `prompt`, in the file `path`, may take; every identifier the
        module's source spells), or ([], []) when the prompt ends elsewhere."""
        found = _SITE.search(prompt, max(0, len(prompt) - SITE_CHARS))  # a site ends the prompt: read its end only
        if found is None:
            return [], []
        word = found.group(1)
        names, spelled = self._lookup(word)
        if names and (_imports(prompt, word) or _imports(self._import_lines.get(path, ""), word)) \
                and not _rebound(prompt, word):
            return names, spelled
        return [], []


class MemberConstraint:
    """Masks logits, step by step, to the tokens that keep the member being written one of `names` (sorted)."""

    def __init__(self, names: list[str], spelled: list[str], token_texts: list[str], token_ids: dict[str, int]):
        self.names, self.spelled, self._set = names, spelled, set(names)  # both sorted
        self.texts, self.ids = token_texts, token_ids
        self.word = ""  # what has been written of the member so far
        self.active = True
        self.applied = 0  # steps at which the mask was applied

    def _fits(self, text: str) -> bool:
        s = self.word + text
        end = _word_end(s)
        if end is None:  # still inside the name: some name must start with it
            return self._starts_one(self.names, s)
        return end > 0 and s[:end] in self._set

    @staticmethod
    def _starts_one(words: list[str], start: str) -> bool:
        i = bisect.bisect_left(words, start)
        return i < len(words) and words[i].startswith(start)

    def _could_be_unlisted(self, text: str) -> bool:
        """A token the model prefers starts an identifier the module spells but does not list (a name in a grouped
        declaration, a re-export, an attribute set at run time)."""
        end = _word_end(text)
        start = text if end is None else text[:end]
        return bool(start) and self._starts_one(self.spelled, start)

    def _only_name(self) -> str | None:
        """The one name that begins with what has been written, when just one does."""
        i = bisect.bisect_left(self.names, self.word)
        if i < len(self.names) and self.names[i].startswith(self.word):
            if not (i + 1 < len(self.names) and self.names[i + 1].startswith(self.word)):
                return self.names[i]
        return None

    def _longest_piece(self, rest: str) -> int | None:
        """The token spelling the longest start of `rest`."""
        for n in range(min(len(rest), MAX_PIECE), 0, -1):
            if rest[:n] in self.ids:
                return self.ids[rest[:n]]
        return None

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return logits
        top = torch.topk(logits, min(CANDIDATES, logits.numel()))
        fitting = [tid for value, tid in zip(top.values.tolist(), top.indices.tolist())
                   if value != float("-inf") and tid < len(self.texts) and self._fits(self.texts[tid])]
        near = bool(fitting) and float(logits[fitting[0]]) >= float(top.values[0]) - MAX_DEFICIT
        if not self.word and not near and self._could_be_unlisted(self.texts[int(top.indices[0])]):
            self.active = False  # the model means a name the summary may have missed: it writes freely
            return logits
        only = self._only_name() if self.word else None
        piece = self._longest_piece(only[len(self.word):]) if only and len(only) > len(self.word) else None
        if piece is not None:  # one name left: its rest in the longest pieces the vocabulary has
            fitting = [piece]
        elif not fitting:  # a name is written, whatever the rank of its characters
            fitting = [tid for tid, text in enumerate(self.texts) if text and self._fits(text)]
        self.applied += 1
        index = torch.tensor(fitting, device=logits.device)
        out = torch.full_like(logits, float("-inf"))
        out[index] = logits[index]
        return out

    def advance(self, piece: str) -> None:
        """Records the text a chosen token wrote; the constraint ends with the name."""
        if self.active:
            self.word += piece
            if _word_end(self.word) is not None:
                self.active = False
