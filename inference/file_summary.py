"""The names line a file segment's header carries: the top-level names other files reach the file by.

A checkpoint trained with it (config.json "segment_names": true) reads every repository file as

    <|file_sep|>billing/helpers.py
    # helpers: helpers.trim helpers.Invoice helpers.RATE
    <code>

so that at a call site `helpers.` the name to complete is one copy away, right behind the module's path, however
deep in the file its definition is.  The qualifier is the name an importer uses: the file's stem (the folder's for
__init__.py, index.* and mod.rs/lib.rs), a Go file's package name; Rust joins with "::".  Names come from
line-anchored regexes per language (public, top level, in file order), the same for training rows and the
engine's cache, so both see identical text.  Not its job: tokenizing, or the full symbol index (lsp/index/).
"""

from __future__ import annotations

import re

MAX_CHARS = 480  # the line stops before the name that would pass this many characters

_TOP_LEVEL = {
    "py": re.compile(r"^(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z]\w*)|^([A-Za-z]\w*)[ \t]*(?::[^=\n]*)?=(?!=)", re.M),
    "js": re.compile(r"^(?:export[ \t]+)?(?:default[ \t]+)?(?:declare[ \t]+)?(?:abstract[ \t]+)?(?:async[ \t]+)?"
                     r"(?:function\*?|class|const|let|var|interface|type|enum)[ \t]+([A-Za-z_$][\w$]*)", re.M),
    "go": re.compile(r"^func[ \t]+([A-Z]\w*)|^(?:type|const|var)[ \t]+([A-Z]\w*)", re.M),
    "rs": re.compile(r"^pub(?:\([^)\n]*\))?[ \t]+(?:async[ \t]+)?(?:unsafe[ \t]+)?(?:const[ \t]+(?=fn))?"
                     r"(?:fn|struct|enum|trait|const|static|type|mod|union)[ \t]+([A-Za-z_]\w*)", re.M),
}
_LANGUAGE = {"py": "py", "pyi": "py", "js": "js", "mjs": "js", "cjs": "js", "jsx": "js", "ts": "js", "tsx": "js",
             "mts": "js", "cts": "js", "go": "go", "rs": "rs"}
_FOLDER_NAMED = {"__init__", "index", "mod", "lib"}
_GO_PACKAGE = re.compile(r"^package[ \t]+(\w+)", re.M)


def _language(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    return _LANGUAGE.get(name.rsplit(".", 1)[-1].lower()) if "." in name else None


def qualifier(path: str, text: str) -> str | None:
    """How an importing file names this one: `helpers.`, `pkg.`, `engine::`; None for other languages."""
    language = _language(path)
    if language is None:
        return None
    if language == "go":
        found = _GO_PACKAGE.search(text)
        return f"{found.group(1)}." if found else None
    parts = path.split("/")
    stem = parts[-1].split(".", 1)[0]
    if stem in _FOLDER_NAMED and len(parts) > 1:
        stem = parts[-2]
    if not re.fullmatch(r"[A-Za-z_$][\w$]*", stem):
        stem = re.sub(r"\W", "_", stem)
    return f"{stem}::" if language == "rs" else f"{stem}."


def top_level_names(path: str, text: str) -> list[str]:
    """Public names the file defines at its top level, in file order, each once."""
    pattern = _TOP_LEVEL.get(_language(path) or "")
    if pattern is None:
        return []
    seen: dict[str, None] = {}
    for found in pattern.finditer(text):
        name = found.group(1) or (found.group(2) if pattern.groups > 1 else None)
        if name and not name.startswith("_"):
            seen.setdefault(name, None)
    return list(seen)


def names_line(path: str, text: str) -> str:
    """'# helpers: helpers.trim helpers.RATE\\n', or '' for a file with no such names."""
    lead = qualifier(path, text)
    names = top_level_names(path, text) if lead else []
    if not names:
        return ""
    line = f"# {lead.rstrip('.:')}:"
    for name in names:
        item = f" {lead}{name}"
        if len(line) + len(item) > MAX_CHARS:
            break
        line += item
    return line + "\n"
