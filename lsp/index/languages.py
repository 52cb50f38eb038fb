"""Which language a file is, by extension, and the tree-sitter parser for each language.

Grammars are loaded lazily, once per process. Extraction rules per language live in extract_*.py.
"""

from __future__ import annotations

import os
from functools import lru_cache

EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".go": "go",
    ".rs": "rust",
}

LANGUAGES = ("python", "typescript", "tsx", "javascript", "go", "rust")


def language_of(path: str) -> str | None:
    """The language name for a path, or None when the index does not parse such files."""
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


@lru_cache(maxsize=None)
def grammar(language: str):
    """The tree_sitter.Language for a language name (raises ValueError for unknown names)."""
    import tree_sitter

    if language == "python":
        import tree_sitter_python as mod

        return tree_sitter.Language(mod.language())
    if language in ("typescript", "tsx"):
        import tree_sitter_typescript as mod

        capsule = mod.language_typescript() if language == "typescript" else mod.language_tsx()
        return tree_sitter.Language(capsule)
    if language == "javascript":
        import tree_sitter_javascript as mod

        return tree_sitter.Language(mod.language())
    if language == "go":
        import tree_sitter_go as mod

        return tree_sitter.Language(mod.language())
    if language == "rust":
        import tree_sitter_rust as mod

        return tree_sitter.Language(mod.language())
    raise ValueError(f"no grammar for language {language!r}")


@lru_cache(maxsize=None)
def parser(language: str):
    import tree_sitter

    return tree_sitter.Parser(grammar(language))
