"""Code actions written by the model: fix a diagnostic, implement a stub function, update every caller.

The list (`offered`) is cheap: it finds targets in the index and tree-sitter and carries them in `data`; the
model writes the edit only in `codeAction/resolve`. Every proposal is applied to the text and parsed
(lsp.edit_check) before it is returned; one that does not parse is refused with its reason (a JSON-RPC error,
a window/showMessage and a log line). Returned edits are tagged LLM-generated where the client lists that tag,
and carry a change annotation that needs confirmation where the client supports annotations.

Reasoning (msa.reasoning, or `data.reasoning` for one request): "enabled" asks the worker to reason, "disabled"
never, "adaptive" for actions that touch several files or write several lines, not for one-line fixes. When
the model cannot reason the request goes without it and the title, the annotation and a message say so.

Non-job: the prompts' exact text for the worker (inference.chat builds chat prompts), finding targets
(lsp.ai_targets), checking edits (lsp.edit_check), the worker link (lsp.worker_client).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp.ai_targets import body_from_model, call_site, function_shape
from lsp.documents import uri_to_path
from lsp.edit_check import check_edits, offset_of
from lsp.index.model import Range
from lsp.postprocess import finish_completion
from lsp.worker_connection import WorkerError, WorkerUnavailable

log = logging.getLogger(__name__)
REQUEST_FAILED, CONTENT_MODIFIED = -32803, -32801
ANNOTATION_ID = "msa.model-edit"
MODEL_EDIT_COMMAND = "msa.modelEdit"  # arguments: a model action's data.msa, then a reasoning mode (optional)
READY_WAIT_S, SYNC_WAIT_S = 30.0, 10.0
FIX_TOKENS, BODY_TOKENS, CALL_TOKENS, REASONING_BUDGET = 64, 256, 96, 256
FUNCTION_KINDS = {"function", "method"}


@dataclass
class Job:
    """One model request: text around the span it replaces, and how its answer becomes the new text."""

    path: str
    span: Range
    prefix: str
    suffix: str
    instruction: str
    stop: list[str]
    max_tokens: int
    lead: str = ""
    trail: str = ""
    shape: object = None  # a FunctionShape when the answer is a function body
    single_line: bool = False


def reasoning_wanted(mode: str, *, multi_file: bool, multi_line: bool) -> bool:
    """enabled: always; disabled: never; adaptive: multi-file actions and multi-line edits, not one-line fixes."""
    if mode == "enabled":
        return True
    if mode == "adaptive":
        return multi_file or multi_line
    return False


def _comment(path: str) -> str:
    return "#" if path.endswith((".py", ".pyi")) else "//"


class AiActions:
    def __init__(self, server):
        self.server = server
        self._fallback_shown = False

    # ---------------------------------------------------------------------------------------------- helpers
    @property
    def service(self):
        return getattr(self.server, "worker", None)

    def _client_caps(self):
        caps = self.server.client_capabilities
        return caps.text_document.code_action if caps and caps.text_document else None

    def _can_resolve(self) -> bool:
        code_action = self._client_caps()
        support = code_action.resolve_support if code_action else None
        return bool(support and "edit" in (support.properties or ()) and code_action.data_support)

    def _tags(self):
        code_action = self._client_caps()
        tags = code_action.tag_support if code_action else None
        if tags and types.CodeActionTag.LlmGenerated in (tags.value_set or ()):
            return [types.CodeActionTag.LlmGenerated]
        return None

    def _worker_reasons(self) -> bool | None:
        client = self.service.client if self.service is not None else None
        if client is None or client.state != "ready":
            return None
        return "reasoning" in client.capabilities

    def _mode(self, override) -> str:
        return override if override in ("enabled", "adaptive", "disabled") else self.server.options.reasoning

    def _action(self, title: str, kind, data: dict, diagnostics=None, *, multi_file: bool, multi_line: bool):
        wanted = reasoning_wanted(self._mode(data.get("reasoning")), multi_file=multi_file, multi_line=multi_line)
        if wanted and self._worker_reasons() is False:
            title += " (reasoning unavailable with this model)"
        elif wanted:
            title += " (with reasoning)"
        return types.CodeAction(title=title, kind=kind, diagnostics=diagnostics, data={"msa": data},
                                tags=self._tags())

    # ---------------------------------------------------------------------------------------------- the list
    def offered(self, ls, params: types.CodeActionParams, path: str, start, end) -> list[types.CodeAction]:
        """The model's actions for a range (cheap: no model call). Empty without a worker or resolve support."""
        if self.service is None or not self.service.wanted() or not self._can_resolve():
            return []
        doc = ls.documents.get(params.text_document.uri)
        if doc is None or ls.state.index is None:
            return []
        base = {"uri": doc.uri, "version": doc.version}
        actions = []
        for diagnostic in params.context.diagnostics:
            first = convert_position(ls, doc, diagnostic.range.start)
            last = convert_position(ls, doc, diagnostic.range.end)
            data = dict(base, kind="fix", line=first[0], col=first[1], end_line=last[0], end_col=last[1],
                        message=diagnostic.message)
            multi_line = _last_line(first, last) > first[0]
            actions.append(self._action(f"Fix with the model: {diagnostic.message[:60]}", types.CodeActionKind.QuickFix,
                                        data, [diagnostic], multi_file=False, multi_line=multi_line))
        for definition in self._functions(ls, path):
            if not definition.full_range.contains(*start):
                continue
            shape = function_shape(path, doc.text, ls.state.index.language(path) or "", definition.name_range)
            if shape is None:
                continue
            data = dict(base, line=definition.name_range.start_line, col=definition.name_range.start_col,
                        name=definition.name)
            if shape.stub:
                actions.append(self._action(f"Implement `{definition.name}` with the model",
                                            types.CodeActionKind.RefactorRewrite, dict(data, kind="implement"),
                                            multi_file=False, multi_line=True))
            if shape.header_line <= start[0] <= max(shape.header_line, shape.body_line - 1) and self._saved_signature(ls, path, definition) not in (None, shape.signature):
                actions.append(self._action(f"Apply this change of `{definition.name}` to every caller",
                                            types.CodeActionKind.RefactorRewrite, dict(data, kind="callers"),
                                            multi_file=True, multi_line=True))
        return actions

    def _functions(self, ls, path: str):
        found = ls.state.query(lambda index: index.symbols_in(path), path)
        out, stack = [], list(found)
        while stack:
            symbol = stack.pop()
            if symbol.definition.kind in FUNCTION_KINDS:
                out.append(symbol.definition)
            stack.extend(symbol.children)
        return sorted(out, key=lambda d: (d.full_range.start_line, -d.full_range.end_line), reverse=True)

    def _saved_signature(self, ls, path: str, definition) -> str | None:
        """The signature of the same function in the file on disk (the last saved text), if it has one."""
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                saved = handle.read()
        except OSError:
            return None
        from lsp.index.extract import extract

        language = ls.state.index.language(path)
        if language is None:
            return None
        same = [d for d in extract(path, saved, language).definitions
                if d.name == definition.name and d.container == definition.container and d.kind == definition.kind]
        if len(same) != 1:
            return None
        shape = function_shape(path, saved, language, same[0].name_range)
        return shape.signature if shape else None

    # ---------------------------------------------------------------------------------------------- resolve
    async def resolve(self, ls, action: types.CodeAction) -> types.CodeAction:
        data = (action.data or {}).get("msa") if isinstance(action.data, dict) else None
        if not data:
            return action
        try:
            return await self._resolve(ls, action, data)
        except JsonRpcException as exc:
            log.warning("code action %r not offered: %s", action.title, exc.message)
            ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                           message=f"msa-lsp: {action.title}: {exc.message}"))
            raise

    async def _resolve(self, ls, action, data: dict) -> types.CodeAction:
        doc = ls.documents.get(data.get("uri", ""))
        if doc is None or doc.version != data.get("version"):
            raise JsonRpcException("the document changed since this action was offered; ask for actions again",
                                   code=CONTENT_MODIFIED)
        service = self.service
        client = service.ensure_worker() if service is not None else None
        if client is None:
            raise JsonRpcException("the model worker is off (enable msa.inlineCompletion.enable or "
                                   "msa.diagnostics.unusualCode)", code=REQUEST_FAILED)
        if not await client.wait_ready(READY_WAIT_S):
            raise JsonRpcException(f"the model worker is {client.state}: {client.message}", code=REQUEST_FAILED)
        client.update_file(ls.state.relative(doc.path), doc.text)  # the model reads this buffer as it is now
        await client.wait_synced(SYNC_WAIT_S)
        kind = data.get("kind")
        if kind == "fix":
            jobs = self._fix_jobs(ls, doc, data)
        elif kind == "implement":
            jobs = self._implement_jobs(ls, doc, data)
        elif kind == "callers":
            jobs = self._caller_jobs(ls, doc, data)
        else:
            raise JsonRpcException(f"unknown model action {kind!r}", code=REQUEST_FAILED)
        files = {job.path for job in jobs}
        multi_file = kind == "callers" or len(files) > 1
        multi_line = any(not job.single_line for job in jobs)
        mode = self._mode(data.get("reasoning"))
        reasoning = reasoning_wanted(mode, multi_file=multi_file, multi_line=multi_line)
        edits, notes = {}, []
        for job in jobs:
            new_text, note = await self._ask(client, job, reasoning)
            notes.append(note)
            edits.setdefault(job.path, []).append((job.span, new_text))
        current = ls.documents.get(doc.uri)
        if current is None or current.version != data["version"]:
            raise JsonRpcException("the document changed while the model was writing; ask again", code=CONTENT_MODIFIED)
        refused = []
        for path, changes in edits.items():
            checked = check_edits(ls.state.relative(path), ls.state.text_of(path) or "", changes)
            if not checked.ok:
                proposed = "; ".join(repr(new[:80]) for _, new in changes)
                refused.append(f"{checked.reason}; proposed {proposed}")
        if refused:
            raise JsonRpcException("; ".join(refused), code=REQUEST_FAILED)
        unavailable = next((note.get("reason") for note in notes if note.get("requested") and not note.get("used")), "")
        if unavailable:
            self._show_fallback(unavailable)
        action.edit = self._workspace_edit(ls, edits, reasoning, notes, unavailable)
        return action

    async def command(self, ls, args) -> dict:
        """msa.modelEdit: computes a model action (its data.msa, reasoning overridden by the second argument) and
        asks the client to apply it with workspace/applyEdit."""
        data = _plain(args[0]) if args else None
        if not isinstance(data, dict) or "kind" not in data:
            raise JsonRpcException(f"{MODEL_EDIT_COMMAND} takes a model action's data.msa object, then a "
                                   "reasoning mode", code=REQUEST_FAILED)
        if len(args) > 1 and args[1] is not None:
            if args[1] not in ("enabled", "adaptive", "disabled"):
                raise JsonRpcException(f"reasoning must be enabled, adaptive or disabled, got {args[1]!r}",
                                       code=REQUEST_FAILED)
            data = dict(data, reasoning=args[1])
        action = await self.resolve(ls, types.CodeAction(title=f"model edit ({data['kind']})", data={"msa": data}))
        result = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
            edit=action.edit, label="msa-lsp model edit"))
        return {"applied": bool(result.applied), "failureReason": result.failure_reason}

    def _show_fallback(self, reason: str) -> None:
        message = f"msa-lsp: reasoning was asked for but is unavailable ({reason}); the model answered without it"
        log.warning("%s", message)
        if not self._fallback_shown:
            self._fallback_shown = True
            self.server.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=message))

    async def _ask(self, client, job: Job, reasoning: bool) -> tuple[str, dict]:
        try:
            stream = await client.generate(path=self.server.state.relative(job.path), prefix=job.prefix,
                                           suffix=job.suffix, instruction=job.instruction, max_tokens=job.max_tokens,
                                           stop=job.stop, reasoning=reasoning, reasoning_budget=REASONING_BUDGET)
            raw = await stream.text()
        except WorkerUnavailable as exc:
            raise JsonRpcException(f"the model worker is {client.state}: {exc}", code=REQUEST_FAILED) from None
        except WorkerError as exc:
            raise JsonRpcException(f"model worker: {exc}", code=REQUEST_FAILED) from None
        note = (stream.done or {}).get("reasoning") or {}
        raw = finish_completion(raw, job.prefix, job.suffix)  # loops, brackets closing nothing, suffix overlap
        if job.shape is not None:
            body = body_from_model(raw, job.shape)
            if not body.strip():
                raise JsonRpcException("the model wrote an empty body", code=REQUEST_FAILED)
            return job.lead + body + job.trail, note
        text = raw.split("\n", 1)[0].strip() if job.single_line else raw.rstrip()
        if not text.strip():
            raise JsonRpcException(f"the model proposed nothing for {self.server.state.relative(job.path)}:"
                                   f"{job.span.start_line + 1}", code=REQUEST_FAILED)
        return job.lead + text + job.trail, note

    def _workspace_edit(self, ls, edits, reasoning: bool, notes: list[dict], unavailable: str) -> types.WorkspaceEdit:
        caps = ls.client_capabilities.workspace.workspace_edit if ls.client_capabilities.workspace else None
        versioned = bool(caps and caps.document_changes)
        edit = ls.state.workspace_edit(edits, versioned=versioned)
        if not (versioned and caps.change_annotation_support is not None):
            return edit
        for change in edit.document_changes:
            change.edits = [types.AnnotatedTextEdit(annotation_id=ANNOTATION_ID, range=e.range, new_text=e.new_text)
                            for e in change.edits]
        if unavailable:
            how = f"reasoning unavailable: {unavailable}"
        else:
            how = "the model reasoned first" if reasoning else "without reasoning"
        edit.change_annotations = {ANNOTATION_ID: types.ChangeAnnotation(
            label="Written by the model", needs_confirmation=True,
            description=f"msa-lsp model edit ({how}); review before applying")}
        return edit

    # ---------------------------------------------------------------------------------------------- jobs
    def _fix_jobs(self, ls, doc, data: dict) -> list[Job]:
        first, last = data["line"], _last_line((data["line"], data["col"]), (data["end_line"], data["end_col"]))
        lines = doc.lines
        if first >= len(lines):
            raise JsonRpcException("the diagnostic is outside the document", code=REQUEST_FAILED)
        last = min(last, len(lines) - 1)
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip(" \t"))]
        start = offset_of(doc.text, first, 0)
        end = offset_of(doc.text, last, len(lines[last]))
        message = " ".join(str(data.get("message", "")).split())
        hint = f"{indent}{_comment(doc.path)} fix: {message}\n"
        single = first == last  # one line keeps its indentation; the model writes the rest of it
        return [Job(path=doc.path, span=Range(first, len(indent) if single else 0, last, len(lines[last])),
                    prefix=doc.text[:start] + hint + (indent if single else ""), suffix=doc.text[end:],
                    instruction=f"Fix this problem at line {first + 1}: {message}. Rewrite line(s) "
                                f"{first + 1}-{last + 1}.", stop=["\n"] if single else ["\n\n\n"],
                    max_tokens=FIX_TOKENS * (last - first + 1), single_line=single)]

    def _definition(self, ls, doc, data: dict):
        found = ls.state.query(lambda index: index.definition_at(doc.path, data["line"], data["col"]), doc.path)
        found = [d for d in found if d.kind in FUNCTION_KINDS and d.path == doc.path]
        if not found:
            raise JsonRpcException(f"no function `{data.get('name')}` at line {data['line'] + 1} any more",
                                   code=REQUEST_FAILED)
        return found[0]

    def _implement_jobs(self, ls, doc, data: dict) -> list[Job]:
        definition = self._definition(ls, doc, data)
        shape = function_shape(doc.path, doc.text, ls.state.index.language(doc.path) or "", definition.name_range)
        if shape is None or not shape.stub:
            raise JsonRpcException(f"`{definition.name}` has a body already", code=REQUEST_FAILED)
        span = shape.body_range
        start = offset_of(doc.text, span.start_line, span.start_col)
        end = offset_of(doc.text, span.end_line, span.end_col)
        return [Job(path=doc.path, span=span, prefix=doc.text[:start] + shape.lead, suffix=shape.trail + doc.text[end:],
                    instruction=f"Implement the body of `{shape.signature}` as its signature and docstring say.",
                    stop=[], max_tokens=BODY_TOKENS, lead=shape.lead, trail=shape.trail, shape=shape)]

    def _caller_jobs(self, ls, doc, data: dict) -> list[Job]:
        definition = self._definition(ls, doc, data)
        language = ls.state.index.language(doc.path) or ""
        shape = function_shape(doc.path, doc.text, language, definition.name_range)
        old = self._saved_signature(ls, doc.path, definition)
        if shape is None or old is None or old == shape.signature:
            raise JsonRpcException(f"the signature of `{definition.name}` is the same as on disk", code=REQUEST_FAILED)
        references = ls.state.query(lambda index: index.references_to(definition), doc.path)
        jobs = []
        where = ls.state.relative(doc.path)
        for ref in references:
            if ref.path == doc.path and ref.range == definition.name_range:
                continue
            text = ls.state.text_of(ref.path)
            ref_language = ls.state.index.language(ref.path)
            if text is None or ref_language is None:
                continue
            site = call_site(ref.path, text, ref_language, ref.range)
            if site is None:
                continue  # an import or a mention, not a call
            start = offset_of(text, site.range.start_line, site.range.start_col)
            end = offset_of(text, site.range.end_line, site.range.end_col)
            line_start = offset_of(text, site.range.start_line, 0)
            row = text[line_start:start]
            indent = row[: len(row) - len(row.lstrip(" \t"))]
            hint = (f"{indent}{_comment(ref.path)} `{definition.name}` ({where}) is now `{shape.signature}` "
                    f"(was `{old}`); this call uses the new signature\n")  # just above the call's line
            single = site.range.start_line == site.range.end_line
            jobs.append(Job(path=ref.path, span=site.range, prefix=text[:line_start] + hint + row, suffix=text[end:],
                            instruction=f"The signature of `{definition.name}` in `{where}` changed from `{old}` to "
                                        f"`{shape.signature}`. Rewrite this call `{site.text}` to match it.",
                            stop=["\n"] if single else [], max_tokens=CALL_TOKENS, single_line=single))
        if not jobs:
            raise JsonRpcException(f"the index knows no calls of `{definition.name}`", code=REQUEST_FAILED)
        return jobs


def _plain(value):
    """Command arguments as plain dicts (pygls may hand JSON objects over as named tuples)."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    return value


def _last_line(first: tuple[int, int], last: tuple[int, int]) -> int:
    """The last line a range really covers (a range ending at column 0 stops on the line before)."""
    return last[0] - 1 if last[0] > first[0] and last[1] == 0 else last[0]


def convert_position(ls, doc, position: types.Position) -> tuple[int, int]:
    from lsp import convert

    return convert.to_server_position(doc.lines, position, ls.encoding)


def register(server) -> AiActions:
    """Adds the model's code actions and codeAction/resolve to `server` (an MsaServer)."""
    actions = AiActions(server)
    server.ai_actions = actions
    providers = getattr(server, "code_action_providers", None)
    if providers is None:
        log.warning("the server offers no code action providers: model code actions are off")
        return actions
    providers.append(actions.offered)

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls, params: types.CodeAction):
        return await actions.resolve(ls, params)

    @server.command(MODEL_EDIT_COMMAND)
    async def model_edit(ls, *args):
        return await actions.command(ls, args)

    return actions
