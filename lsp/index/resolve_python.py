"""Python import resolution: absolute imports against the workspace root, src/ and every package
root (the parent of a top-level package), relative imports, packages (__init__.py), stubs (.pyi),
and `from pkg import submodule`."""

from __future__ import annotations

import os

from .model import Import
from .resolve import EXTERNAL, Resolution


_PACKAGE_FILES = ("__init__.py", "__init__.pyi")
_INIT_PY, _INIT_PYI = os.sep + "__init__.py", os.sep + "__init__.pyi"
_MODULE_ATTRIBUTES = {"__doc__", "__name__", "__file__", "__path__", "__spec__", "__loader__", "__package__",
                      "__dict__", "__all__", "__version__", "__builtins__"}


class PythonLayout:
    def __init__(self, layout):
        self.layout = layout
        self._memo: dict[tuple[str, str], str | None] = {}
        self._top_prefixes: dict[str, tuple[str, ...]] = {}
        pkg_dirs = {os.path.dirname(p) for p in layout.files if os.path.basename(p) in ("__init__.py", "__init__.pyi")}
        self.package_dirs = pkg_dirs
        # the workspace root (and src/) hold top-level modules, unless the root is itself a package
        roots = [] if layout.root in pkg_dirs else [layout.root]
        src = os.path.join(layout.root, "src")
        if src not in pkg_dirs and (src in layout.by_dir or any(d.startswith(src + os.sep) for d in pkg_dirs)):
            roots.append(src)
        for directory in sorted(pkg_dirs):
            parent = os.path.dirname(directory)
            if parent not in pkg_dirs and parent not in roots:
                roots.append(parent)
        self.roots = roots
        self.top_names = set()
        for root in roots:
            for path in layout.by_dir.get(root, ()):
                stem, ext = os.path.splitext(os.path.basename(path))
                if ext in (".py", ".pyi"):
                    self.top_names.add(stem)
        for directory in layout.by_dir:
            parent, name = os.path.split(directory)
            if parent in roots and (directory in pkg_dirs or any(p.endswith((".py", ".pyi")) for p in layout.by_dir[directory])):
                self.top_names.add(name)

    def module_file(self, base: str, dotted: str) -> str | None:
        """The file for module `dotted` (may be "") under directory `base` (memoized)."""
        key = (base, dotted)
        if key in self._memo:
            return self._memo[key]
        stem = base + os.sep + dotted.replace(".", os.sep) if dotted else base
        files = self.layout.files
        found = None
        for candidate in (stem + ".py", stem + ".pyi", stem + _INIT_PY, stem + _INIT_PYI):
            if candidate in files:
                found = candidate
                break
        self._memo[key] = found
        return found

    def _absolute(self, dotted: str) -> str | None:
        for root in self.roots:
            found = self.module_file(root, dotted)
            if found:
                return found
        return None

    def resolve(self, path: str, imp: Import) -> Resolution:
        spec = imp.spec
        level = len(spec) - len(spec.lstrip("."))
        rest = spec[level:]
        if level:
            base = os.path.dirname(path)
            for _ in range(level - 1):
                base = os.path.dirname(base)
            if not (base + os.sep).startswith(self.layout.root + os.sep):
                return EXTERNAL  # climbs out of the workspace: nothing to say about it
            module = self.module_file(base, rest)
            submodules = [self.module_file(base, f"{rest}.{n.name}" if rest else n.name) for n in imp.names]
            reportable = True
        else:
            module = self._absolute(rest)
            submodules = [self._absolute(f"{rest}.{n.name}") for n in imp.names]
            reportable = rest.split(".")[0] in self.top_names
            if module is None and reportable and "." in rest:
                # `import os.path`: a plain module that sets its "submodules" as attributes
                parts = rest.split(".")
                for k in range(len(parts) - 1, 0, -1):
                    prefix = self._absolute(".".join(parts[:k]))
                    if prefix is not None:
                        if os.path.basename(prefix) not in _PACKAGE_FILES:
                            return Resolution((prefix,), True)
                        break
        found_subs = [s for s in submodules if s]
        if module is None and not found_subs:
            if not reportable or self._compiled(base if level else None, rest):
                return EXTERNAL
            return Resolution((), True, f"no module {spec!r} in the workspace")
        # the package itself is a target only when something other than its submodules is taken from it
        targets = []
        if module and (not imp.names or imp.wildcard or len(found_subs) < len(imp.names)):
            targets.append(module)
        targets.extend(s for s in found_subs if s not in targets)
        missing = [n.name for n, s in zip(imp.names, submodules) if not s]
        if missing and (module is not None or found_subs):  # a directory is a namespace package
            package_dir = os.path.dirname(module) if module and os.path.basename(module) in _PACKAGE_FILES else None
            if package_dir:
                missing = [name for name in missing if not os.path.isdir(os.path.join(package_dir, name))]
        if missing and module is not None and not level and not self._same_top(path, rest):
            missing = []  # names of another top-level package are only checked for existence as modules
        if module is None and missing and reportable:
            return Resolution(tuple(targets), True, f"no module {', '.join(missing)} in {spec!r}")
        if module is not None and missing and reportable and self._names_are_static(module):
            names = self.layout.names_in(module)
            absent = [name for name in missing if name not in names and name not in _MODULE_ATTRIBUTES]
            if absent:
                where = os.path.relpath(module, self.layout.root)
                return Resolution(tuple(targets), True, f"{', '.join(absent)} is neither defined in {where} nor a submodule")
        return Resolution(tuple(targets), reportable)

    def _compiled(self, base: str | None, dotted: str) -> bool:
        """Whether `dotted` exists as a compiled extension module (.so/.pyd), which is not indexed."""
        for root in [base] if base is not None else self.roots:
            stem = os.path.join(root, *dotted.split(".")) if dotted else root
            directory, name = os.path.split(stem)
            try:
                entries = os.listdir(directory)
            except OSError:
                continue
            if any(e.startswith(name + ".") and e.endswith((".so", ".pyd")) for e in entries):
                return True
        return False

    def _same_top(self, path: str, dotted: str) -> bool:
        """Whether `path` lives inside the top-level package that `dotted` starts with."""
        top = dotted.split(".")[0]
        prefixes = self._top_prefixes.get(top)
        if prefixes is None:
            prefixes = self._top_prefixes[top] = tuple(os.path.join(root, top) + os.sep for root in self.roots)
        return path.startswith(prefixes)

    def _names_are_static(self, module: str) -> bool:
        """Whether a module's names can be listed from its syntax (no *, __getattr__, globals())."""
        return self.layout.static_names(module)
