"""Where FIM middles start and end in training tails, and identifier renaming across a row's files.

Editor-shaped split points: a completion starts at a token-ish boundary (an identifier's start, after
punctuation or whitespace, a line start), rarely inside a word.  The engine heals a prompt that ends in whitespace
(inference/healing.py: the prefix loses its trailing " \\t\\n" and the output must re-type them), so most split
points are moved left over whitespace: the middle then starts with that whitespace, exactly as served.

Call-site middles: the middle starts at an occurrence, in the target file, of a name defined (def/class/function/
fn/func/const ..., a regex per language) in a context file included in the same row, and runs to the end of that
line, so the model learns to copy names and arguments from other files.  Renaming: names defined in included
context files and used in the target get fresh compound names in every file of the row, so memorised names are
useless and copying is the only way.  Qualifying: `from pkg.mod import a, b` of an included file mod.py becomes
`from pkg import mod` (JS/TS: `import { a, b } from './mod'` or `const { a, b } = require('./mod')` becomes
`import * as mod from './mod'`, `const mod = require('./mod')`) and the uses `mod.a`, `mod.b`, so a call site must
find the definition through the module's file, as at `helpers.` in an editor.  Uses already written so in any
language (`helpers.trim(`, `srv.ParseHeader(`, `table::parse(`, the qualifier of inference/file_summary.py) are found
by `qualified_uses`, and such a call-site middle starts right after the qualifier.  Not its job: tokenising or
packing rows (batches.py).
"""

from __future__ import annotations

import random
import re

from inference import file_summary

HEALED = " \t\n"  # the characters inference/healing.py cuts from a prompt's end
HEAL_SHARE = 0.85  # split points moved left over whitespace, as the engine's healing does
MID_WORD_SHARE = 0.05  # split points left inside an identifier (a user typing a name)
MIDDLE_CHARS = 400

_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_DEFINITIONS = {
    "py": re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)|^([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)",
                     re.M),
    "js": re.compile(r"\b(?:function\*?|class|const|let|var|interface|type|enum)[ \t]+([A-Za-z_$][\w$]*)"
                     r"|^[ \t]*(?:async[ \t]+|static[ \t]+|public[ \t]+|private[ \t]+)*([A-Za-z_$][\w$]*)[ \t]*\([^)\n]*\)[ \t]*(?::[^{\n]*)?\{",
                     re.M),
    "go": re.compile(r"\bfunc[ \t]+(?:\([^)]*\)[ \t]*)?([A-Za-z_]\w*)|\b(?:type|const|var)[ \t]+([A-Za-z_]\w*)"),
    "rs": re.compile(r"\b(?:fn|struct|enum|trait|const|static|type|mod|union)[ \t]+([A-Za-z_]\w*)|macro_rules![ \t]*([A-Za-z_]\w*)"),
}
_LANGUAGE = {"py": "py", "js": "js", "mjs": "js", "cjs": "js", "jsx": "js", "ts": "js", "tsx": "js", "mts": "js",
             "cts": "js", "go": "go", "rs": "rs"}
_KEYWORDS = set("""self this that none true false null undefined async await function return class const static
default value values result super init main test args kwargs data name type string number object error
while switch catch for with elif else""".split())


def language(path: str) -> str | None:
    return _LANGUAGE.get(path.rsplit(".", 1)[-1].lower()) if "." in path else None


def defined_names(path: str, text: str) -> set[str]:
    """Names this file defines (top-level or nested), at least 4 characters, not common words."""
    pattern = _DEFINITIONS.get(language(path) or "")
    if pattern is None:
        return set()
    out = set()
    for m in pattern.finditer(text):
        name = m.group(1) or m.group(2)
        if name and len(name) >= 4 and name.lower() not in _KEYWORDS and not name.startswith("__") \
                and name != "constructor":
            out.add(name)
    return out


def words_in(text: str) -> set[str]:
    return set(_IDENT.findall(text))


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def boundary_at_or_before(text: str, i: int, rng: random.Random) -> int:
    """A split point at or left of i: not inside a word (except MID_WORD_SHARE), then healed left over
    whitespace (HEAL_SHARE) so the prefix ends on a non-space character as the engine serves it."""
    i = max(0, min(i, len(text)))
    if rng.random() >= MID_WORD_SHARE:
        while 0 < i < len(text) and _is_word(text[i - 1]) and _is_word(text[i]):
            i -= 1
    if rng.random() < HEAL_SHARE:
        i = heal(text, i)
    return i


def heal(text: str, i: int) -> int:
    while i > 0 and text[i - 1] in HEALED:
        i -= 1
    return i


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _rest_of_line(text: str, start: int) -> int:
    """End of the line holding the first non-space character at or after start (a healed start sits before
    the whitespace, maybe before a newline)."""
    j = start
    while j < len(text) and text[j] in HEALED:
        j += 1
    return _line_end(text, j)


def editor_split(text: str, rng: random.Random) -> tuple[int, int]:
    """(start, end) of a middle shaped like an editor completion: rest of a line (and maybe a few more lines),
    1-3 whole lines, or a short span between boundaries."""
    mode = rng.random()
    if mode < 0.5:
        start = boundary_at_or_before(text, rng.randrange(len(text)), rng)
        end = _rest_of_line(text, start)
        for _ in range(rng.choice([0, 0, 0, 0, 1, 2, 3])):
            end = _line_end(text, end + 1) if end < len(text) else end
    elif mode < 0.8:
        starts = [0] + [m.end() for m in re.finditer("\n", text[:-1])]
        line_start = rng.choice(starts)
        start = heal(text, line_start) if rng.random() < HEAL_SHARE else line_start
        end = _rest_of_line(text, line_start)
        for _ in range(rng.randint(0, 2)):
            end = _line_end(text, end + 1) if end < len(text) else end
    else:
        start = boundary_at_or_before(text, rng.randrange(len(text)), rng)
        end = start + rng.randint(1, 120)
        while end < len(text) and _is_word(text[end - 1]) and _is_word(text[end]):
            end += 1
        end = min(end, len(text))
    return start, min(end, start + MIDDLE_CHARS)


_IMPORT = re.compile(r"^\s*(?:from\s|import\s|use\s|export\s.*\sfrom\s)|\bimport\b|\brequire\(")


def _in_comment(text: str, i: int) -> bool:
    """Whether position i most likely sits in a comment (a line comment or a block comment's line)."""
    line = text[text.rfind("\n", 0, i) + 1: i]
    return "//" in line or "#" in line or line.lstrip().startswith(("*", "/*"))


def _on_import_line(text: str, i: int) -> bool:
    return bool(_IMPORT.search(text[text.rfind("\n", 0, i) + 1: i]))


def call_site_split(text: str, names: set[str], rng: random.Random, prefer: set[str] = frozenset(),
                    after: set[str] = frozenset()) -> tuple[int, int, str] | None:
    """(start, end, name): the middle starts at an occurrence of one of `names` in text (one of `prefer` when any
    occurs): right after one of the qualifiers `after` (`helpers.`, `pkg::`) outside import lines when the name
    has such an occurrence (the first, 70%, or any), else the first outside an import line (50%), the first (20%)
    or any, and runs to the end of its line; None when none of the names occurs outside comments."""
    used = sorted(n for n in names if n in text)
    if not used:
        return None
    found: dict[str, list[int]] = {}
    for m in occurrences(text, used):
        if not _in_comment(text, m.start()):
            found.setdefault(m.group(0), []).append(m.start())
    if not found:
        return None
    pool = sorted(n for n in found if n in prefer) or sorted(found)
    name = rng.choice(pool)
    spots = found[name]
    uses = [i for i in spots if not _on_import_line(text, i)]
    qualified = [i for i in uses if any(_after_qualifier(text, i, q) for q in after)]
    pick = rng.random()
    if qualified:
        at = qualified[0] if pick < 0.7 else rng.choice(qualified)
    else:
        at = (uses or spots)[0] if pick < 0.5 else spots[0] if pick < 0.7 else rng.choice(spots)
    start = heal(text, at) if rng.random() < HEAL_SHARE else at
    return start, min(_line_end(text, at), max(at + len(name), start + MIDDLE_CHARS)), name


# ---- already-qualified uses (every language file_summary knows) ------------------------------------------------

_QUALIFIED_USE = re.compile(r"(?<![\w$])(?=([A-Za-z_$][\w$]*(?:\.|::))([A-Za-z_$][\w$]*))")


def _after_qualifier(text: str, i: int, qualifier: str) -> bool:
    """Whether text[:i] ends with `qualifier` and no longer word holds it (`myhelpers.` is not `helpers.`)."""
    j = i - len(qualifier)
    return j >= 0 and text.startswith(qualifier, j) and not (j > 0 and _is_word(text[j - 1]))


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
        if name in modules.get(lead, ()) and name not in found and not _in_comment(text, m.start()) \
                and not _on_import_line(text, m.start()):
            found.add(name)
    return found


# ---- renaming ---------------------------------------------------------------------------------------------

_PIECES = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


def identifier_words(texts, limit: int = 4000) -> list[str]:
    """Lower-case pieces (3-9 letters) of the identifiers in `texts`, for fresh compound names."""
    seen: set[str] = set()
    for text in texts:
        for ident in _IDENT.findall(text[:20000]):
            for piece in _PIECES.findall(ident):
                piece = piece.lower()
                if 3 <= len(piece) <= 9 and piece.isascii():
                    seen.add(piece)
        if len(seen) >= limit:
            break
    return sorted(seen)


def fresh_name(old: str, words: list[str], rng: random.Random, taken: set[str], snake: bool = True) -> str:
    """A random compound of 2-3 corpus words (sometimes with a number) in the style of `old` (UPPER_CASE,
    PascalCase, and for lower-case names snake_case where the language writes them so, `snake`, else camelCase)."""
    lead = old[: len(old) - len(old.lstrip("_$"))]
    core = old[len(lead):]
    while True:
        parts = rng.sample(words, rng.choice([2, 2, 3]))
        if core.isupper() and len(core) > 1:
            name = "_".join(p.upper() for p in parts)
        elif "_" in core or (core.islower() and snake):
            name = "_".join(parts)
        elif core[:1].isupper():
            name = "".join(p.capitalize() for p in parts)
        else:
            name = parts[0] + "".join(p.capitalize() for p in parts[1:])
        if rng.random() < 0.2:
            name += ("_" if "_" in name or name.isupper() else "") + str(rng.randrange(2, 1000))
        name = lead + name
        if name not in taken:
            return name


def _whole_words(names) -> re.Pattern:
    """Matches any of `names` as a whole word (not inside a longer identifier)."""
    return re.compile(r"(?<![\w$])(?:" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")(?![\w$])")


def occurrences(text: str, names) -> list[re.Match]:
    """Whole-word occurrences of any of `names` in text."""
    return list(_whole_words(names).finditer(text)) if names else []


def rename(texts: list[str], mapping: dict[str, str]) -> list[str]:
    """Whole-word replacement of every old name by its new one in each text (one pass, so no chains)."""
    if not mapping:
        return list(texts)
    pattern = _whole_words(mapping)
    return [pattern.sub(lambda m: mapping[m.group(0)], t) for t in texts]


# ---- qualifying imported names (Python) ----------------------------------------------------------------------

_FROM_IMPORT = re.compile(r"^(?P<indent>[ \t]*)from[ \t]+(?P<package>\.*(?:\w+\.)*)(?P<stem>\w+)[ \t]+import[ \t]+"
                          r"(?:\((?P<listed>[\w \t\n,]+)\)|(?P<names>\w+(?:[ \t]*,[ \t]*\w+)*)[ \t]*,?)[ \t]*$", re.M)
_ASSIGNED = re.compile(r"[ \t]*=(?!=)")


def _qualified(use: re.Match, text: str, stem: str) -> str:
    """`stem.name` for a use of a name in text, unchanged on an import line, after a dot or before `=`."""
    line = text[text.rfind("\n", 0, use.start()) + 1: use.start()]
    if _IMPORT.search(line) or text[use.start() - 1: use.start()] == "." or _ASSIGNED.match(text, use.end()):
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
        text = text[:m.start()] + line + _whole_words(names).sub(lambda use: _qualified(use, rest, stem), rest)
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
            return _whole_words(names).sub(
                lambda use: f"{lead}.{use.group(0)}" if _js_use(part, use) == "use" else use.group(0), part)
        text = qualify(head) + statement + qualify(rest)
        qualified.update(names)
    return text, qualified
