"""Where FIM middles start and end in training tails, and identifier renaming across a row's files.

Editor-shaped split points: a completion starts at a token-ish boundary (an identifier's start, after
punctuation or whitespace, a line start), rarely inside a word.  The engine heals a prompt that ends in whitespace
(inference/healing.py: the prefix loses its trailing " \\t\\n" and the output must re-type them), so most split
points are moved left over whitespace: the middle then starts with that whitespace, exactly as served.

Call-site middles: the middle starts at an occurrence, in the target file, of a name defined (def/class/function/
fn/func/const ..., a regex per language) in a context file included in the same row, and runs to the end of that
line, so the model learns to copy names and arguments from other files.  Renaming: names defined in included
context files and used in the target get fresh compound names in every file of the row, so memorised names are
useless and copying is the only way.  A call site whose name is used through its module (qualify.py) starts
right after the module's qualifier (`helpers.`, `pkg::`).  Not its job: tokenising or packing rows (batches.py)
or rewriting imports (qualify.py).
"""

from __future__ import annotations

import random
import re

from inference import file_summary
from inference.healing import is_word

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


def boundary_at_or_before(text: str, i: int, rng: random.Random) -> int:
    """A split point at or left of i: not inside a word (except MID_WORD_SHARE), then healed left over
    whitespace (HEAL_SHARE) so the prefix ends on a non-space character as the engine serves it."""
    i = max(0, min(i, len(text)))
    if rng.random() >= MID_WORD_SHARE:
        while 0 < i < len(text) and is_word(text[i - 1]) and is_word(text[i]):
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
        while end < len(text) and is_word(text[end - 1]) and is_word(text[end]):
            end += 1
        end = min(end, len(text))
    return start, min(end, start + MIDDLE_CHARS)


_IMPORT = re.compile(r"^\s*(?:from\s|import\s|use\s|export\s.*\sfrom\s)|\bimport\b|\brequire\(")


def in_comment(text: str, i: int) -> bool:
    """Whether position i most likely sits in a comment (a line comment or a block comment's line)."""
    line = text[text.rfind("\n", 0, i) + 1: i]
    return "//" in line or "#" in line or line.lstrip().startswith(("*", "/*"))


def on_import_line(text: str, i: int) -> bool:
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
        if not in_comment(text, m.start()):
            found.setdefault(m.group(0), []).append(m.start())
    if not found:
        return None
    pool = sorted(n for n in found if n in prefer) or sorted(found)
    name = rng.choice(pool)
    spots = found[name]
    uses = [i for i in spots if not on_import_line(text, i)]
    qualified = [i for i in uses if any(_after_qualifier(text, i, q) for q in after)]
    pick = rng.random()
    if qualified:
        at = qualified[0] if pick < 0.7 else rng.choice(qualified)
    else:
        at = (uses or spots)[0] if pick < 0.5 else spots[0] if pick < 0.7 else rng.choice(spots)
    start = heal(text, at) if rng.random() < HEAL_SHARE else at
    return start, min(_line_end(text, at), max(at + len(name), start + MIDDLE_CHARS)), name


def _after_qualifier(text: str, i: int, qualifier: str) -> bool:
    """Whether text[:i] ends with `qualifier` and no longer word holds it (`myhelpers.` is not `helpers.`)."""
    j = i - len(qualifier)
    return j >= 0 and text.startswith(qualifier, j) and not (j > 0 and is_word(text[j - 1]))


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


def whole_words(names) -> re.Pattern:
    """Matches any of `names` as a whole word (not inside a longer identifier)."""
    return re.compile(r"(?<![\w$])(?:" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")(?![\w$])")


def occurrences(text: str, names) -> list[re.Match]:
    """Whole-word occurrences of any of `names` in text."""
    return list(whole_words(names).finditer(text)) if names else []


def rename(texts: list[str], mapping: dict[str, str]) -> list[str]:
    """Whole-word replacement of every old name by its new one in each text (one pass, so no chains)."""
    if not mapping:
        return list(texts)
    pattern = whole_words(mapping)
    return [pattern.sub(lambda m: mapping[m.group(0)], t) for t in texts]
