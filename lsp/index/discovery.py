"""Finds the files to index under a root and says why every other file was left out.

Always skips .git/, .hg/, .svn/ and __pycache__/; honours nested .gitignore files (and
.git/info/exclude), user exclude globs, a size cap, secrets rules, binary sniffing and symlink loops. It reads only names, sizes and the first 8 KB of files the
index cannot parse; source files are read (and checked for NUL bytes and UTF-8) by read_source().
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from dataclasses import dataclass, field

from .gitignore import IgnoreStack
from .languages import language_of
from .model import IndexOptions, SkippedFile

log = logging.getLogger("msa.index")

SNIFF_BYTES = 8192
# version-control internals and bytecode caches are never source, whatever .gitignore says
ALWAYS_SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
CONFIG_NAMES = ("go.mod", "tsconfig.json", "jsconfig.json", "Cargo.toml")
_SECRET_GLOBS = (".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
                 "*.p12", "*.pfx", "*.keystore", "*.jks", "credentials", "credentials.json",
                 "credentials.*.json", "*credentials*.json", ".netrc", "_netrc", ".pypirc", ".git-credentials",
                 "secrets.json", "secrets.yaml", "secrets.yml", "service-account*.json", ".htpasswd")
_TOKEN_MARKERS = (b"_authtoken", b"_auth=", b"_password", b"//registry", b"token")


@dataclass
class Discovery:
    files: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, language)
    skipped: list[SkippedFile] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)  # absolute path -> text (go.mod, tsconfig...)


def is_secret(name: str, path: str | None = None) -> bool:
    """Secrets by name (.env*, keys, credential files); .npmrc/.yarnrc only when they hold a token."""
    lower = name.lower()
    if any(fnmatch.fnmatchcase(lower, glob) for glob in _SECRET_GLOBS):
        return True
    if lower in (".npmrc", ".yarnrc", ".yarnrc.yml") and path is not None:
        try:
            with open(path, "rb") as fh:
                head = fh.read(SNIFF_BYTES).lower()
        except OSError:
            return False
        return any(marker in head for marker in _TOKEN_MARKERS)
    return False


def read_source(path: str, max_file_size: int) -> tuple[str | None, str]:
    """Read a source file: (text, "") or (None, reason) when it must be skipped."""
    try:
        size = os.stat(path).st_size
        if size > max_file_size:
            return None, f"too large ({size} bytes > {max_file_size})"
        with open(path, "rb") as fh:
            data = fh.read(max_file_size + 1)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    if len(data) > max_file_size:
        return None, f"too large (over {max_file_size} bytes)"
    if b"\0" in data[:SNIFF_BYTES]:
        return None, "binary (NUL bytes)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte {exc.start})"
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, ""


def _sniff_binary(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return b"\0" in fh.read(SNIFF_BYTES)
    except OSError:
        return False


def make_ignore(root: str, options: IndexOptions) -> IgnoreStack:
    """Ignore rules that apply from the root down: user excludes and .git/info/exclude."""
    stack = IgnoreStack()
    stack.add("", list(options.exclude))
    try:
        with open(os.path.join(root, ".git", "info", "exclude"), encoding="utf-8", errors="replace") as fh:
            stack.add("", fh.read().splitlines())
    except OSError:
        pass
    return stack


def _load_gitignore(stack: IgnoreStack, directory: str, rel: str) -> None:
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as fh:
            stack.add(rel, fh.read().splitlines())
    except OSError:
        pass


def discover(root: str, options: IndexOptions) -> Discovery:
    """Walk `root` and classify every entry; never raises for a bad file or directory."""
    root = os.path.abspath(root)
    result = Discovery()
    ignore = make_ignore(root, options)

    def skip(path: str, reason: str) -> None:
        log.info("skipped %s: %s", path, reason)
        result.skipped.append(SkippedFile(path, reason))

    try:
        root_stat = os.stat(root)
    except OSError as exc:
        skip(root, f"unreadable ({exc.strerror or exc})")
        return result
    # each stack entry: (dir path, relative path, identities of the dirs above and including it)
    pending = [(root, "", ((root_stat.st_dev, root_stat.st_ino),))]
    seen_dirs = {(root_stat.st_dev, root_stat.st_ino)}
    while pending:
        directory, rel, chain = pending.pop()
        _load_gitignore(ignore, directory, rel)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            skip(directory, f"unreadable ({exc.strerror or exc})")
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            path = entry.path
            child_rel = f"{rel}/{name}" if rel else name
            try:
                is_link = entry.is_symlink()
                st = os.stat(path)  # follows links
            except OSError as exc:
                skip(path, "broken symlink" if is_link else f"unreadable ({exc.strerror or exc})")
                continue
            if stat.S_ISDIR(st.st_mode):
                if name in ALWAYS_SKIPPED_DIRS or ignore.ignored(child_rel, True):
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in chain:
                    skip(path, "symlink loop")
                    continue
                if ident in seen_dirs:
                    skip(path, "symlink to a directory already indexed")
                    continue
                seen_dirs.add(ident)
                subdirs.append((path, child_rel, chain + (ident,)))
                continue
            if not stat.S_ISREG(st.st_mode) or ignore.ignored(child_rel, False):
                continue
            if not options.include_secrets and is_secret(name, path):
                skip(path, "secret")
                continue
            if name in CONFIG_NAMES and st.st_size <= options.max_file_size:
                text, _ = read_source(path, options.max_file_size)
                if text is not None:
                    result.config[path] = text
            language = language_of(name)
            if language is None:
                if _sniff_binary(path):
                    skip(path, "binary (NUL bytes)")
                continue
            if st.st_size > options.max_file_size:
                skip(path, f"too large ({st.st_size} bytes > {options.max_file_size})")
                continue
            result.files.append((path, language))
        pending.extend(reversed(subdirs))
    return result


def path_excluded(root: str, path: str, options: IndexOptions) -> str:
    """Why a single path under `root` is not indexed ("" if it is indexable by name): used when
    a buffer is opened or a watched file changes, outside a full walk."""
    root = os.path.abspath(root)
    rel = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    if rel.startswith("../") or rel == "..":
        return "outside the workspace"
    parts = rel.split("/")
    if any(part in ALWAYS_SKIPPED_DIRS for part in parts[:-1]):
        return "inside " + next(part for part in parts[:-1] if part in ALWAYS_SKIPPED_DIRS)
    ignore = make_ignore(root, options)
    directory = root
    for i, part in enumerate(parts):
        _load_gitignore(ignore, directory, "/".join(parts[:i]))
        sub = "/".join(parts[: i + 1])
        if ignore.ignored(sub, i < len(parts) - 1):
            return "ignored (.gitignore or exclude)"
        directory = os.path.join(directory, part)
    if not options.include_secrets and is_secret(parts[-1], path):
        return "secret"
    if language_of(path) is None:
        return "unsupported language"
    return ""
