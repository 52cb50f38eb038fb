"""Parses one file with tree-sitter and turns the tree into compact FileFacts: definitions, imports
and syntax errors, with code-point columns. Identifier occurrences are extracted on demand by
identifiers(), so no tree is kept after a file is indexed.

Per-language rules live in extract_python.py, extract_ts.py, extract_go.py and extract_rust.py.
"""

from __future__ import annotations

from functools import lru_cache

from .languages import grammar, parser
from .model import Definition, FileFacts, Range

MAX_SYNTAX_ERRORS = 50


def decode(data: bytes) -> str:
    """UTF-8 bytes back to text, keeping lone surrogates; bytes cut mid-character become U+FFFD."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


class Source:
    """One file's bytes plus helpers that turn tree-sitter nodes into code-point ranges and text."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        # lone surrogates (a client's broken UTF-16) survive as 3-byte sequences, one code point each
        self.data = text.encode("utf-8", "surrogatepass")
        self.ascii = len(self.data) == len(text)
        self._lines: list[bytes] | None = None

    def col(self, row: int, byte_col: int) -> int:
        if self.ascii or byte_col == 0:
            return byte_col
        if self._lines is None:
            self._lines = self.data.split(b"\n")
        line = self._lines[row] if row < len(self._lines) else b""
        return len(decode(line[:byte_col]))

    def range(self, node) -> Range:
        (sr, sc), (er, ec) = node.start_point, node.end_point
        if self.ascii:
            return Range(sr, sc, er, ec)
        return Range(sr, self.col(sr, sc), er, self.col(er, ec))

    def node_text(self, node) -> str:
        return decode(self.data[node.start_byte : node.end_byte])

    def definition(self, name_node, full_node, kind: str, container: str, name: str | None = None) -> Definition:
        return Definition(self.path, name if name is not None else self.node_text(name_node), kind, container,
                          self.range(name_node), self.range(full_node))


_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}


def _first_token(node):
    while node.child_count:
        node = node.children[0]
    return node


def _leaves(node, limit: int = 20000):
    cursor = node.walk()
    seen = 0
    while seen < limit:
        if cursor.node.child_count == 0:
            seen += 1
            yield cursor.node
        elif cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent() or cursor.node == node:
                return
    return


def _unbalanced(node):
    """The bracket token inside an ERROR node that never finds its partner, with a message."""
    stack = []
    for leaf in _leaves(node):
        kind = leaf.type
        if kind in _OPENERS:
            stack.append(leaf)
        elif kind in _CLOSERS:
            if stack and stack[-1].type == _CLOSERS[kind]:
                stack.pop()
            elif not stack:
                return leaf, f"unmatched {kind!r}"
    if stack:
        return stack[-1], f"{stack[-1].type!r} was never closed"
    return None


def _nested_error(node):
    """The first ERROR node strictly inside `node` (pre-order), or None."""
    stack = list(reversed(node.children))
    while stack:
        child = stack.pop()
        if child.is_error:
            return child
        if child.has_error:
            stack.extend(reversed(child.children))
    return None


def _error_site(src: Source, node) -> tuple[Range, str]:
    unbalanced = _unbalanced(node)
    if unbalanced is not None:
        token, message = unbalanced
        return src.range(token), message
    nested = _nested_error(node)
    if nested is not None:  # the parser recovered around an inner mistake: that one is closer
        return _error_site(src, nested)
    token = _first_token(node)
    snippet = src.node_text(token).splitlines()[0][:40] if token.end_byte > token.start_byte else ""
    rng = src.range(token)
    if rng.end_line != rng.start_line:
        rng = Range(rng.start_line, rng.start_col, rng.start_line, rng.start_col + len(snippet))
    return rng, (f"syntax error: unexpected {snippet!r}" if snippet else "syntax error")


def syntax_errors(src: Source, root) -> list[tuple[Range, str]]:
    """ERROR and MISSING nodes with tight ranges: an ERROR node is reported on the bracket it
    leaves unbalanced, else on its first token; a MISSING node where the token should be."""
    found: list[tuple[Range, str]] = []
    if not root.has_error:
        return found
    stack = [root]
    while stack and len(found) < MAX_SYNTAX_ERRORS:
        node = stack.pop()
        if node.is_missing:
            found.append((src.range(node), f"missing {node.type!r}"))
            continue
        if node.is_error:
            found.append(_error_site(src, node))
            continue
        stack.extend(child for child in reversed(node.children) if child.has_error or child.is_missing)
    found.sort()
    return found


def _rules(language: str):
    if language == "python":
        from . import extract_python as rules
    elif language in ("typescript", "tsx", "javascript"):
        from . import extract_ts as rules
    elif language == "go":
        from . import extract_go as rules
    elif language == "rust":
        from . import extract_rust as rules
    else:
        raise ValueError(f"no extraction rules for {language!r}")
    return rules


def extract(path: str, text: str, language: str) -> FileFacts:
    """Parse `text` as `language` and return its facts (never raises on bad syntax)."""
    return extract_with_tree(path, text, language)[0]


def extract_with_tree(path: str, text: str, language: str, previous=None):
    """Like extract(), also returning (bytes, tree) for the next call; `previous` is such a pair
    from an earlier version of the same file, reused for an incremental reparse."""
    src = Source(path, text)
    old_tree = _edit_previous(previous, src.data) if previous is not None else None
    tree = parser(language).parse(src.data, old_tree) if old_tree is not None else parser(language).parse(src.data)
    facts = FileFacts(language)
    _rules(language).collect(src, tree.root_node, facts)
    facts.syntax_errors = syntax_errors(src, tree.root_node)
    return facts, (src.data, tree)


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # binary search on memcmp'd slices
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _point(data: bytes, offset: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def _edit_previous(previous, new: bytes):
    """Tell the old tree where the text changed (one contiguous edit) so the parse is incremental."""
    old, tree = previous
    if old == new:
        return tree
    start = _common_prefix(old, new)
    limit = min(len(old), len(new)) - start
    suffix = _common_prefix(old[::-1][:limit], new[::-1][:limit])
    old_end, new_end = len(old) - suffix, len(new) - suffix
    tree = tree.copy()
    tree.edit(start_byte=start, old_end_byte=old_end, new_end_byte=new_end, start_point=_point(old, start),
              old_end_point=_point(old, old_end), new_end_point=_point(new, new_end))
    return tree


_IDENTIFIER_TYPES = {
    "python": "(identifier) @id",
    "typescript": "[(identifier) (property_identifier) (type_identifier) (shorthand_property_identifier)"
                  " (shorthand_property_identifier_pattern) (private_property_identifier)] @id",
    "go": "[(identifier) (field_identifier) (type_identifier) (package_identifier)] @id",
    "rust": "[(identifier) (field_identifier) (type_identifier)] @id",
}


@lru_cache(maxsize=None)
def _identifier_query(language: str):
    from tree_sitter import Query, QueryCursor

    key = language if language in _IDENTIFIER_TYPES else "typescript"
    if language == "javascript":
        source = _IDENTIFIER_TYPES["typescript"].replace(" (type_identifier)", "")
    else:
        source = _IDENTIFIER_TYPES[key]
    return Query(grammar(language), source), QueryCursor


def identifiers(path: str, text: str, language: str, name: str | None = None) -> list[tuple[str, Range]]:
    """Every identifier occurrence (name, range) in source order, optionally only those spelled `name`."""
    src = Source(path, text)
    if name is not None and name.encode("utf-8", "surrogatepass") not in src.data:
        return []
    tree = parser(language).parse(src.data)
    query, cursor_class = _identifier_query(language)
    nodes = cursor_class(query).captures(tree.root_node).get("id", [])
    wanted = name.encode("utf-8", "surrogatepass") if name is not None else None
    out = []
    for node in nodes:
        raw = src.data[node.start_byte : node.end_byte]
        if wanted is not None and raw != wanted:
            continue
        out.append((decode(raw), src.range(node)))
    out.sort(key=lambda item: item[1])
    return out
