"""The editor's open buffers: text and version per URI, changed by didOpen/didChange/didClose.

An open buffer's text wins over the file on disk; `lines_for` gives either, so ranges in any file
can be converted to client units. Not the place for indexing or publishing (server.py does that).
"""

from __future__ import annotations

import logging
import os
import pathlib
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import unquote, urlparse

from lsprotocol import types

from lsp import convert

log = logging.getLogger(__name__)


class UnknownDocument(KeyError):
    """A change or request named a document the client never opened."""


def uri_to_path(uri: str) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return os.path.abspath(unquote(parsed.path))  # as the index keeps paths: absolute, symlinks kept


def path_to_uri(path: str) -> str:
    return pathlib.Path(os.path.abspath(path)).as_uri()


@dataclass
class OpenDocument:
    uri: str
    path: str
    text: str
    version: int
    language_id: str = ""
    lines: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.lines = convert.split_lines(self.text)


class Documents:
    def __init__(self):
        self._open: dict[str, OpenDocument] = {}
        self._not_files: set[str] = set()  # open untitled:/other-scheme buffers: nothing to index

    def open(self, item: types.TextDocumentItem) -> OpenDocument | None:
        path = uri_to_path(item.uri)
        if path is None:
            log.info("not indexing %s: not a file", item.uri)
            self._not_files.add(item.uri)
            return None
        doc = OpenDocument(item.uri, path, item.text, item.version, item.language_id)
        self._open[item.uri] = doc
        return doc

    def change(self, params: types.DidChangeTextDocumentParams, encoding: str) -> OpenDocument | None:
        """Applies the changes in order (None for a non-file buffer); raises UnknownDocument for a
        document that is not open."""
        doc = self._open.get(params.text_document.uri)
        if doc is None:
            if params.text_document.uri in self._not_files:
                return None
            raise UnknownDocument(params.text_document.uri)
        if params.text_document.version <= doc.version:
            log.warning("%s: version %d after %d; applying the change anyway", doc.uri,
                        params.text_document.version, doc.version)
        for change in params.content_changes:
            doc.text = convert.apply_change(doc.text, doc.lines, change, encoding)
            doc.lines = convert.split_lines(doc.text)
        doc.version = params.text_document.version
        return doc

    def close(self, uri: str) -> OpenDocument | None:
        self._not_files.discard(uri)
        return self._open.pop(uri, None)

    def get(self, uri: str) -> OpenDocument | None:
        return self._open.get(uri)

    def by_path(self, path: str) -> OpenDocument | None:
        for doc in self._open.values():
            if doc.path == path:
                return doc
        return None

    def all(self) -> list[OpenDocument]:
        return list(self._open.values())

    def lines_for(self, path: str) -> Sequence[str]:
        """The open buffer's lines, else the file's on disk (undecodable bytes replaced), else none."""
        doc = self.by_path(path)
        if doc is not None:
            return doc.lines
        try:
            return convert.split_lines(pathlib.Path(path).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return []
