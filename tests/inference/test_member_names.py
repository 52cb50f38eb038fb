"""Member sites: after `module.` of an imported repository module, the name written is one that module defines."""

from __future__ import annotations

import torch

from inference import member_names
from inference.engine import Engine
from inference.member_names import MemberConstraint, ModuleNames

HELPERS = "RATE = 3\n\n\ndef trim_lines(x):\n    return x\n\n\nclass Invoice:\n    pass\n\n\ndef _private():\n    pass\n"


def test_a_member_site_needs_the_module_imported_in_the_live_file():
    modules = ModuleNames()
    modules.update([("billing/helpers.py", HELPERS), ("README.md", "# helpers")], [])
    assert modules.site("from billing import helpers\n\nx = helpers.") == ["Invoice", "RATE", "trim_lines"]
    assert modules.site("import billing.helpers as helpers\nhelpers.") == ["Invoice", "RATE", "trim_lines"]
    assert modules.site("x = helpers.") == []  # not imported: a variable that happens to share the name
    assert modules.site("from billing import helpers\nx = helpers.trim") == []  # not right after the dot
    assert modules.site("import ledger\nledger.") == []  # no such module in the repository
    modules.update([("billing/main.py", "from billing import helpers\n" + "x = 1\n" * 200)], [])
    assert modules.site("x = 1\nhelpers.", "billing/main.py") == ["Invoice", "RATE", "trim_lines"]  # imports above the window
    assert modules.site("x = 1\nhelpers.", "billing/other.py") == []
    modules.update([], ["billing/helpers.py"])
    assert modules.site("from billing import helpers\nhelpers.") == []


def test_go_packages_pool_their_files_and_rust_and_js_imports_count():
    modules = ModuleNames()
    modules.update([("srv/a.go", "package srv\n\nfunc ParseHeader() {}\n"),
                    ("srv/b.go", "package srv\n\nfunc Serve() {}\nfunc helper() {}\n"),
                    ("src/table.rs", "pub fn parse() {}\nfn hidden() {}\n"),
                    ("lib/fmt.js", "export function pad(s) {}\n")], [])
    go = 'package main\n\nimport (\n\t"example.com/app/srv"\n)\n\nfunc main() {\n\tsrv.'
    assert modules.site(go) == ["ParseHeader", "Serve"]
    assert modules.site("use crate::table;\n\nfn main() {\n    table::") == ["parse"]
    assert modules.site("const fmt = require('./lib/fmt');\nfmt.") == ["pad"]


def test_a_package_lends_its_imports_and_modules():
    modules = ModuleNames()
    modules.update([("billing/__init__.py", "from .rates import convert as convert_amount\n"),
                    ("billing/rates.py", "def convert():\n    pass\n")], [])
    names = modules.site("import billing\nbilling.")
    assert {"convert_amount", "rates"} <= set(names)


TEXTS = ["trim", "_lines", "(", "x", " ", "tri", "m_lines(", "Inv", "oice", "zzz", "t", "r", "i", "m", "_", "l", "n",
         "e", "s", "rim_li"]
IDS = {text: tid for tid, text in enumerate(TEXTS)}


def _logits(best: str, also: dict[str, float] | None = None) -> torch.Tensor:
    logits = torch.zeros(len(TEXTS))
    logits[TEXTS.index(best)] = 10.0
    for text, value in (also or {}).items():
        logits[TEXTS.index(text)] = value
    return logits


def test_the_mask_keeps_the_name_and_lets_it_end():
    member = MemberConstraint(["Invoice", "trim_lines"], TEXTS, IDS)
    masked = member.mask(_logits("zzz", {"trim": 5.0}))  # the model prefers a name the module lacks
    assert TEXTS[int(masked.argmax())] == "trim" and masked[TEXTS.index("zzz")] == float("-inf")
    member.advance("trim")
    masked = member.mask(_logits("(", {"_lines": 1.0}))  # "trim(" would call a name that does not exist
    assert TEXTS[int(masked.argmax())] == "_lines"
    member.advance("_lines")
    assert member.mask(_logits("(")).argmax() == TEXTS.index("(")  # the name is whole: it may end
    member.advance("(")
    assert not member.active and member.applied == 3


def test_the_model_writes_freely_when_no_name_is_near_its_choice():
    member = MemberConstraint(["trim_lines"], TEXTS, IDS)
    logits = _logits("zzz", {"tri": 10.0 - 9.0})  # 9 nats behind
    assert torch.equal(member.mask(logits), logits) and not member.active


def test_a_name_begun_is_finished_even_past_the_likeliest_tokens(monkeypatch):
    monkeypatch.setattr(member_names, "CANDIDATES", 2)  # "l" is not among the two likeliest
    member = MemberConstraint(["trim_lines"], TEXTS, IDS)
    member.advance("trim_")
    logits = torch.full((len(TEXTS),), -1e9)
    logits[TEXTS.index("zzz")] = 0.0
    logits[TEXTS.index("l")] = -1e8  # far down, yet the only way on
    assert TEXTS[int(member.mask(logits).argmax())] == "l"


def test_the_engine_completes_a_member_of_the_imported_module(tiny_models):
    engine = Engine(str(tiny_models["qwen3"]))
    engine.sync([("billing/helpers.py", "h", HELPERS), ("billing/ledger.py", "l", "def post_entries():\n    pass\n")], [])
    prefix = "from billing import helpers\n\n\ndef total(x):\n    return helpers."
    out = "".join(engine.complete("billing/main.py", prefix, "\n", max_tokens=12))
    assert engine.last_stats["member_names"] == 3 and engine.last_stats["member_steps"] >= 1
    assert any(out.startswith(name) and not out[len(name):len(name) + 1].isidentifier()
               for name in ("Invoice", "RATE", "trim_lines")), out
    typed = "".join(engine.complete("billing/main.py", prefix + "tr", "\n", max_tokens=12))
    assert typed.startswith("im_lines"), typed  # after two typed letters, the one name they begin
    engine.member_names = False
    "".join(engine.complete("billing/main.py", prefix, "\n", max_tokens=4))
    assert engine.last_stats["member_names"] == 0 and engine.last_stats["member_steps"] == 0


def test_once_one_name_is_left_its_rest_comes_in_the_longest_pieces():
    member = MemberConstraint(["Invoice", "trim_lines"], TEXTS, IDS)
    member.advance("t")  # only trim_lines begins so
    masked = member.mask(_logits("r"))  # the model would spell it letter by letter
    assert TEXTS[int(masked.argmax())] == "rim_li" and masked[TEXTS.index("r")] == float("-inf")
