"""TypeScript/JavaScript import resolution: relative paths with extension and index-file lookup
(including `./x.js` naming `x.ts`), and tsconfig.json/jsconfig.json `compilerOptions.paths` and
`baseUrl` from the nearest config above the importing file (following relative `extends`). Bare
package names are external."""

from __future__ import annotations

import json
import os
import re

from .model import Import
from .resolve import EXTERNAL, Resolution

_EXTS = (".ts", ".tsx", ".d.ts", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")
_JS_TO_TS = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}
_COMMENTS = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def parse_jsonc(text: str) -> dict:
    """JSON with comments and trailing commas, as tsconfig.json allows."""
    stripped = _COMMENTS.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", text)
    value = json.loads(_TRAILING_COMMA.sub(r"\1", stripped))
    return value if isinstance(value, dict) else {}


class TypeScriptLayout:
    def __init__(self, layout):
        self.layout = layout
        # directory -> effective options {"baseUrl": absolute dir or None, "paths": {...}, "pathsDir": dir}
        self.configs: dict[str, dict] = {}
        for path in sorted(layout.config):
            if os.path.basename(path) in ("tsconfig.json", "jsconfig.json"):
                self.configs.setdefault(os.path.dirname(path), self._effective(path, 0))

    def _read(self, path: str) -> dict:
        text = self.layout.config.get(path)
        if text is None:
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                return {}
        try:
            return parse_jsonc(text)
        except ValueError:
            return {}

    def _effective(self, path: str, depth: int) -> dict:
        """compilerOptions of one config after following `extends` (relative paths only);
        baseUrl and paths stay relative to the file that sets them."""
        config = self._read(path)
        directory = os.path.dirname(path)
        effective = {"baseUrl": None, "paths": {}, "pathsDir": directory}
        parent = config.get("extends")
        if isinstance(parent, str) and parent.startswith(".") and depth < 5:
            base = os.path.normpath(os.path.join(directory, parent))
            effective = self._effective(base if base.endswith(".json") else base + ".json", depth + 1)
        options = config.get("compilerOptions") if isinstance(config.get("compilerOptions"), dict) else {}
        if isinstance(options.get("baseUrl"), str):
            effective = {**effective, "baseUrl": os.path.normpath(os.path.join(directory, options["baseUrl"]))}
        if isinstance(options.get("paths"), dict):
            effective = {**effective, "paths": options["paths"], "pathsDir": directory}
        return effective

    def file_for(self, base: str) -> str | None:
        files = self.layout.files
        if base in files:
            return base
        stem, ext = os.path.splitext(base)
        for alt in _JS_TO_TS.get(ext, ()):
            if stem + alt in files:
                return stem + alt
        for ext in _EXTS:
            if base + ext in files:
                return base + ext
        for ext in _EXTS:
            index = os.path.join(base, "index" + ext)
            if index in files:
                return index
        return None

    def _config_for(self, path: str) -> tuple[str, dict] | None:
        directory = os.path.dirname(path)
        while True:
            if directory in self.configs:
                return directory, self.configs[directory]
            parent = os.path.dirname(directory)
            if parent == directory or not directory.startswith(self.layout.root):
                return None
            directory = parent

    def resolve(self, path: str, imp: Import) -> Resolution:
        spec = imp.spec
        if spec.startswith((".", "/")):
            base = os.path.normpath(os.path.join(os.path.dirname(path), spec))
            found = self.file_for(base)
            if found:
                return Resolution((found,), True)
            if os.path.isfile(base):  # JSON, CSS, images...: a real file the index does not parse
                return EXTERNAL
            return Resolution((), True, f"no file {spec}(.ts|.tsx|.js|...) or {spec}/index.*")
        config = self._config_for(path)
        if config is None:
            return EXTERNAL
        _, options = config
        base_url = options["baseUrl"]
        for pattern, replacements in options["paths"].items():
            star = self._match(pattern, spec)
            if star is None:
                continue
            for replacement in replacements if isinstance(replacements, list) else []:
                if not isinstance(replacement, str):
                    continue
                candidate = os.path.normpath(os.path.join(base_url or options["pathsDir"], replacement.replace("*", star, 1)))
                found = self.file_for(candidate)
                if found:
                    return Resolution((found,), True)
            return Resolution((), True, f"tsconfig paths pattern {pattern!r} matches but no file exists")
        if base_url:
            found = self.file_for(os.path.normpath(os.path.join(base_url, spec)))
            if found:
                return Resolution((found,), True)
        return EXTERNAL

    @staticmethod
    def _match(pattern: str, spec: str) -> str | None:
        if "*" not in pattern:
            return "" if pattern == spec else None
        prefix, _, suffix = pattern.partition("*")
        if spec.startswith(prefix) and spec.endswith(suffix) and len(spec) >= len(prefix) + len(suffix):
            return spec[len(prefix) : len(spec) - len(suffix)]
        return None
