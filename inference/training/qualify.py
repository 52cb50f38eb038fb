"""Module-qualified call sites for training rows: imports of a row's context files rewritten so that their names
are used through the module, and uses already written so, so that a call site must find the name through the
module's file, as at `helpers.` in an editor (the names line of its segment header lists it,
inference/file_summary.py).

Python: `from pkg.mod import a, b` of an included file mod.py becomes `from pkg import mod` and the uses `mod.a`,
`mod.b`.  JavaScript / TypeScript: `import { a, b } from './mod'` or `const { a, b } = require('./mod')` becomes
`import * as mod from './mod'` or `const mod = require('./mod')`, with the same uses.  Every language: the names a
file already uses right after an included module's qualifier (`helpers.trim(`, `srv.ParseHeader(`,
`table::parse(`).  Not its job: choosing the call site (middles.py) or building rows (batches.py).
"""

from __future__ import annotations

import re

from inference import file_summary
from inference.training.middles import in_comment, language, occurrences, on_import_line, whole_words

# ---- already-qualified uses (every language file_summary knows) ----------------------------------------------

_QUALIFIED_USE = re.compile(r"(?<![\w$])(?=([A-Za-z_$][\w$]*(?:\.|::))([A-Za-z_$][\w$]*))")


def qualified_modules(files: list[tuple[str, str]]) -> dict[str, set[str]]:
    """{qualifier: top-level names} of the (path, shown text) files (inference/file_summary.py), for a qualifier
    that names one module only: one file, or for Go one folder (a package's files share its name and namespace).
    A qualifier two modules share is left out: a use of it could mean either."""
    modules: dict[str, set[str]] = {}
    owners: dict[str, set[str]] = {}
    for path, text in files:
        lead = file_summary.qualifier(path, text)
        if lead is None:
            continue
        owner = (path.rsplit("/", 1)[0] if "/" in path else "") if language(path) == "go" else path
        owners.setdefault(lead, set()).add(owner)
        modules.setdefault(lead, set()).update(file_summary.top_level_names(path, text))
    return {lead: names for lead, names in modules.items() if len(owners[lead]) == 1 and names}


def qualified_uses(text: str, modules: dict[str, set[str]]) -> set[str]:
    """The names of `modules` ({qualifier such as `helpers.`, `srv.`, `table::`: names that module defines}) that
    text uses right after their module's qualifier: `helpers.trim(x)`, `srv.ParseHeader(raw)`,
    `crate::table::parse(s)`, call sites written qualified as in an editor at `helpers.`.  Not counted: a qualifier
    glued to a longer word (`myhelpers.trim`), another module's qualifier (`other.trim`), comment lines, and import
    lines (`import helpers.trim`, `use crate::table::parse;` name a path; the code then calls the name bare)."""
    found: set[str] = set()
    if not modules:
        return found
    for m in _QUALIFIED_USE.finditer(text):
        lead, name = m.group(1), m.group(2)
        if name in modules.get(lead, ()) and name not in found and not in_comment(text, m.start()) \
                and not on_import_line(text, m.start()):
            found.add(name)
    return found


# ---- qualifying imported names (Python) ----------------------------------------------------------------------

_FROM_IMPORT = re.compile(r"^(?P<indent>[ \t]*)from[ \t]+(?P<package>\.*(?:\w+\.)*)(?P<stem>\w+)[ \t]+import[ \t]+"
                          r"(?:\((?P<listed>[\w \t\n,]+)\)|(?P<names>\w+(?:[ \t]*,[ \t]*\w+)*)[ \t]*,?)[ \t]*$", re.M)
_ASSIGNED = re.compile(r"[ \t]*=(?!=)")


def _qualified(use: re.Match, text: str, stem: str) -> str:
    """`stem.name` for a use of a name in text, unchanged on an import line, after a dot or before `=`."""
    if on_import_line(text, use.start()) or text[use.start() - 1: use.start()] == "." or _ASSIGNED.match(text, use.end()):
        return use.group(0)
    return f"{stem}.{use.group(0)}"


def qualify_imports(text: str, modules: dict[str, set[str]]) -> tuple[str, set[str]]:
    """(text, qualified names): each `from <package>.<stem> import a, b` (or `import (a, b)` over lines; no `as`) whose
    stem is a key of `modules` ({file stem: names that file defines}) and whose names that file all defines becomes
    `from <package> import <stem>` (`import <stem>` without a package) and every later use of a and b becomes
    `<stem>.a`, `<stem>.b` (not attribute accesses `x.a`, keyword arguments `a=` or other import lines).  A stem
    the text already uses as a word elsewhere is left alone (it would clash)."""
    qualified: set[str] = set()
    done: set[str] = set()
    for m in reversed(list(_FROM_IMPORT.finditer(text))):
        stem, names = m.group("stem"), [n.strip() for n in (m.group("names") or m.group("listed")).split(",") if n.strip()]
        if stem in done or stem not in modules or not set(names) <= modules[stem] or stem in names:
            continue
        if len(occurrences(text, [stem])) != 1:
            continue
        package = m.group("package")
        line = (f"{m.group('indent')}import {stem}" if not package else
                f"{m.group('indent')}from {package if package.strip('.') == '' else package.rstrip('.')} import {stem}")
        rest = text[m.end():]
        text = text[:m.start()] + line + whole_words(names).sub(lambda use: _qualified(use, rest, stem), rest)
        qualified.update(names)
        done.add(stem)
    return text, qualified


# ---- qualifying imported names (JavaScript / TypeScript) -----------------------------------------------------

_JS_SPECIFIER = r"(?P<quote>['\"])(?P<spec>\.{1,2}/[^'\"\n]*)(?P=quote)"
_JS_STATEMENTS = (
    re.compile(r"^(?P<indent>[ \t]*)import[ \t]*\{(?P<listed>[^{}]*)\}[ \t]*from[ \t]*" + _JS_SPECIFIER
               + r"[ \t]*(?P<semi>;?)", re.M),
    re.compile(r"^(?P<kind>const|let|var)[ \t]+\{(?P<listed>[^{}]*)\}[ \t]*=[ \t]*require\([ \t]*" + _JS_SPECIFIER
               + r"[ \t]*\)(?P<semi>;?)", re.M),
)
_JS_WORD = re.compile(r"[A-Za-z_$][\w$]*")
_JS_RESERVED = set("""break case catch class const continue debugger default delete do else enum export extends false
finally for function if import in instanceof new null return super switch this throw true try typeof var void while
with yield let static implements interface package private protected public await arguments eval any unknown string
number boolean symbol bigint object never""".split())  # and TypeScript's type names
_JS_MODIFIERS = r"(?:(?:async|static|get|set|public|private|protected|readonly|override)[ \t]+)*"
_JS_PARAMETERS = re.compile(
    r"\bfunction\b[ \t]*\*?[ \t]*[\w$]*[ \t]*(?:<[^<>()]*>)?[ \t]*\(([^()]*)\)"     # function f(a, b)
    r"|\(([^()]*)\)[ \t]*(?::[^=;{}()\n]+)?=>"                                        # (a, b) =>, (a): T =>
    r"|(?<![\w$.])([A-Za-z_$][\w$]*)[ \t]*=>"                                         # a =>
    r"|\bcatch[ \t]*\(([^()]*)\)"                                                     # catch (a)
    r"|^[ \t]*" + _JS_MODIFIERS + r"(?!(?:if|for|while|switch|with|return|function|catch)\b)[A-Za-z_$][\w$]*"
    r"[ \t]*(?:<[^<>()]*>)?\(([^()]*)\)[ \t]*(?::[^{;\n]*)?\{", re.M)                # method(a, b) {
_JS_METHOD = re.compile(r"[ \t]*(?:<[^<>()\n]*>)?\([^()\n]*\)[ \t]*(?::[^{;\n]*)?\{")
_JS_DECLARED = re.compile(r"\b(?:function\*?|class|const|let|var|interface|type|enum|namespace)[ \t]+$")
_JS_IMPORT_LINE = re.compile(r"^[ \t]*(?:import\b|export[ \t]*(?:\{|\*|type[ \t]*\{))|\brequire[ \t]*\(")
_JS_ASSIGNED = re.compile(r"[ \t]*(?:(?:\*\*|<<|>>>?|\?\?|&&|\|\||[-+*/%&|^])?=(?![=>])|=>|\+\+|--)")
_JS_MODIFIER_USE = re.compile(r"[ \t]+(?!(?:in|instanceof|of|as|satisfies)\b)[#A-Za-z_$][\w$]*[ \t]*"
                              r"(?:<[^<>()\n]*>)?\(")  # `a name(`: `a` modifies a method, as `get` does
_JS_TYPED = re.compile(r"\b(?:const|let|var)[ \t]+[A-Za-z_$][\w$]*[ \t]*:[ \t]*$")
_JS_KEY = re.compile(r"\s*\??:(?!:)")


def _js_module_name(spec: str) -> str:
    """The qualifier an import specifier names (inference/file_summary.py's rule): its last path component up to
    the first dot, or the folder's name for `.../index`; '' for a bare `./index`."""
    parts = [p for p in spec.split("/") if p not in ("", ".", "..")]
    if not parts:
        return ""
    stem = parts[-1].split(".", 1)[0]
    if stem == "index":  # `./index` alone names the importer's own folder, which the specifier does not say
        stem = parts[-2].split(".", 1)[0] if len(parts) > 1 else ""
    return stem if _JS_WORD.fullmatch(stem) else re.sub(r"\W", "_", stem)


def _open_bracket(text: str, i: int, reach: int = 4000) -> str:
    """The innermost bracket still open at position i (looking back at most `reach` characters), or ''."""
    depth = 0
    for j in range(i - 1, max(-1, i - reach - 1), -1):
        ch = text[j]
        if ch in ")]}":
            depth += 1
        elif ch in "([{":
            if depth == 0:
                return ch
            depth -= 1
    return ""


def _js_use(text: str, m: re.Match) -> str:
    """What the occurrence m of an imported name is: 'use' (to qualify), 'leave' (a property `x.a`, a key
    `{ a: 1 }`, a quoted string) or 'ambiguous' (a shorthand `{ a }`, a declaration or parameter, an assignment, an
    import or export list, a method: qualifying it, or not, could break the code)."""
    i, j = m.start(), m.end()
    near = text[max(0, i - 200): i]
    if near.endswith(".") and not near.endswith("..."):
        return "leave"
    if near[-1:] in ("'", '"', "`") and text[j: j + 1] == near[-1]:
        return "leave"
    line = text[text.rfind("\n", 0, i) + 1: i]
    stripped = near.rstrip()
    prev, new_line = stripped[-1:], "\n" in near[len(stripped):]
    if _JS_IMPORT_LINE.search(line) or _JS_DECLARED.search(line) or re.search(r"(?:\+\+|--)[ \t]*$", line):
        return "ambiguous"
    typed = prev == ":" and (_JS_TYPED.search(line) or _open_bracket(text, i) == "(")
    if _JS_ASSIGNED.match(text, j) and not typed:
        return "ambiguous"  # an assignment, unless to a typed variable or parameter: `opt: Options = {}`
    if _JS_KEY.match(text, j) and prev != "?" and ((prev and prev in "{,;") or new_line) \
            and not re.search(r"\bcase\s*$", stripped):
        return "leave" if _open_bracket(text, i) == "{" else "ambiguous"
    if prev and prev in "{," and not stripped.endswith("${") and text[j:].lstrip()[:1] in ("}", ",") \
            and _open_bracket(text, i) == "{":
        return "ambiguous"  # a shorthand `{ a }` (or a JSX `{a}`, alike to a regex)
    if (re.fullmatch(r"[ \t]*" + _JS_MODIFIERS, line) and _JS_METHOD.match(text, j)) \
            or _JS_MODIFIER_USE.match(text, j):
        return "ambiguous"  # a method `a(x) {`, or a modifier such as an imported `get` in `get size() {`
    return "use"


def _parameter_names(text: str) -> set[str]:
    """Names bound as parameters (of a function, arrow, method or catch) anywhere in text."""
    out: set[str] = set()
    for m in _JS_PARAMETERS.finditer(text):
        for group in m.groups():
            if group:
                out.update(_JS_WORD.findall(re.sub(r":[^,]*|=[^,]*", "", group)))
    return out


def _js_statements(text: str) -> dict[str, list[re.Match]]:
    """{qualifier: the named-import statements of text whose relative specifier names it}."""
    found: dict[str, list[re.Match]] = {}
    for pattern in _JS_STATEMENTS:
        for m in pattern.finditer(text):
            found.setdefault(_js_module_name(m.group("spec")), []).append(m)
    return found


def qualify_js_imports(text: str, modules: dict[str, set[str]]) -> tuple[str, set[str]]:
    """(text, qualified names): each `import { a, b } from './helpers'` (braces over one line or several) or
    `const { a, b } = require('./helpers')` whose relative specifier names a key of `modules` ({qualifier such as
    `helpers` (a file's stem, or the folder's for `.../index`): names that file defines}) and whose names that file
    all defines becomes `import * as helpers from './helpers'` (`const helpers = require('./helpers')`), quotes and
    semicolon kept, and every other use of a and b becomes `helpers.a`, `helpers.b` (not properties `x.a`, keys
    `{ a: 1 }` or quoted strings).  Left alone: a statement with an alias, a `type` name or a default import, a
    module imported twice, a qualifier the text already uses as a word elsewhere, and a module one of whose names
    has a use that qualifying could break (a shorthand `{ a }`, a declaration or parameter, an assignment, another
    import or export list, a method)."""
    qualified: set[str] = set()
    bound = _parameter_names(text)
    for lead in sorted(_js_statements(text)):
        found = _js_statements(text).get(lead, [])
        if len(found) != 1 or lead not in modules or lead in _JS_RESERVED or not _JS_WORD.fullmatch(lead):
            continue
        m = found[0]
        names = [n.strip() for n in m.group("listed").split(",") if n.strip()]
        if not names or lead in names or set(names) & bound \
                or not all(_JS_WORD.fullmatch(n) and n in modules[lead] for n in names):
            continue
        head, rest = text[:m.start()], text[m.end():]
        if occurrences(head, [lead]) or occurrences(rest, [lead]):
            continue
        kinds = {_js_use(part, use) for part in (head, rest) for use in occurrences(part, names)}
        if "ambiguous" in kinds:
            continue
        spec = f"{m.group('quote')}{m.group('spec')}{m.group('quote')}"
        statement = (f"{m.group('kind')} {lead} = require({spec}){m.group('semi')}" if "kind" in m.re.groupindex
                     else f"{m.group('indent')}import * as {lead} from {spec}{m.group('semi')}")

        def qualify(part: str) -> str:
            return whole_words(names).sub(
                lambda use: f"{lead}.{use.group(0)}" if _js_use(part, use) == "use" else use.group(0), part)
        text = qualify(head) + statement + qualify(rest)
        qualified.update(names)
    return text, qualified
