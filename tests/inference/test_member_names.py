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
    assert modules.site("from billing import helpers\n\nx = helpers.")[0] == ["Invoice", "RATE", "trim_lines"]
    assert modules.site("import billing.helpers as helpers\nhelpers.")[0] == ["Invoice", "RATE", "trim_lines"]
    assert modules.site("x = helpers.")[0] == []  # not imported: a variable that happens to share the name
    assert modules.site("from billing import helpers\nx = helpers.trim")[0] == []  # not right after the dot
    assert modules.site("import ledger\nledger.")[0] == []  # no such module in the repository
    modules.update([("billing/main.py", "from billing import helpers\n" + "x = 1\n" * 200)], [])
    # the prompt's window starts below the imports: the live file as last synced has them
    assert modules.site("x = 1\nhelpers.", "billing/main.py")[0] == ["Invoice", "RATE", "trim_lines"]
    assert modules.site("x = 1\nhelpers.", "billing/other.py")[0] == []
    modules.update([], ["billing/helpers.py"])
    assert modules.site("from billing import helpers\nhelpers.")[0] == []


def test_go_packages_pool_their_files_and_rust_and_js_imports_count():
    modules = ModuleNames()
    modules.update([("srv/a.go", "package srv\n\nfunc ParseHeader() {}\n"),
                    ("srv/b.go", "package srv\n\nfunc Serve() {}\nfunc helper() {}\n"),
                    ("src/table.rs", "pub fn parse() {}\nfn hidden() {}\n"),
                    ("lib/fmt.js", "export function pad(s) {}\n")], [])
    go = 'package main\n\nimport (\n\t"example.com/app/srv"\n)\n\nfunc main() {\n\tsrv.'
    assert modules.site(go)[0] == ["ParseHeader", "Serve"]
    assert modules.site("use crate::table;\n\nfn main() {\n    table::")[0] == ["parse"]
    assert modules.site("const fmt = require('./lib/fmt');\nfmt.")[0] == ["pad"]


def test_a_package_lends_its_imports_and_modules():
    modules = ModuleNames()
    modules.update([("billing/__init__.py", "from .rates import convert as convert_amount\n"),
                    ("billing/rates.py", "def convert():\n    pass\n")], [])
    names = modules.site("import billing\nbilling.")[0]
    assert {"convert_amount", "rates"} <= set(names)
    modules.update([("billing/ledger.py", "def post():\n    pass\n"),
                    ("billing/rates.py", "def convert():\n    pass\n\n\ndef round_half():\n    pass\n")], [])
    assert "ledger" in modules.site("import billing\nbilling.")[0]  # a module added to the package
    assert modules.site("from billing import rates\nrates.")[0] == ["convert", "round_half"]  # an edited module


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
    member = MemberConstraint(["Invoice", "trim_lines"], [], TEXTS, IDS)
    masked = member.mask(_logits("zzz", {"trim": 5.0}))  # the model prefers a name the module lacks
    assert TEXTS[int(masked.argmax())] == "trim" and masked[TEXTS.index("zzz")] == float("-inf")
    member.advance("trim")
    masked = member.mask(_logits("(", {"_lines": 1.0}))  # "trim(" would call a name that does not exist
    assert TEXTS[int(masked.argmax())] == "_lines"
    member.advance("_lines")
    assert member.mask(_logits("(")).argmax() == TEXTS.index("(")  # the name is whole: it may end
    member.advance("(")
    assert not member.active and member.applied == 3


def test_the_model_writes_freely_when_it_means_a_name_the_module_spells_but_does_not_list():
    logits = _logits("zzz", {"tri": 10.0 - 9.0})  # the listed name 9 nats behind the model's choice
    unlisted = MemberConstraint(["trim_lines"], ["trim_lines", "zzz_total"], TEXTS, IDS)  # e.g. in a `const (` block
    assert torch.equal(unlisted.mask(logits), logits) and not unlisted.active
    nowhere = MemberConstraint(["trim_lines"], ["trim_lines"], TEXTS, IDS)  # the module never spells zzz...
    assert TEXTS[int(nowhere.mask(logits).argmax())] == "tri" and nowhere.active
    near = MemberConstraint(["trim_lines"], ["trim_lines", "zzz_total"], TEXTS, IDS)
    assert TEXTS[int(near.mask(_logits("zzz", {"tri": 10.0 - 3.0})).argmax())] == "tri"  # a listed name is near


def test_grouped_declarations_are_spelled_and_wholesale_re_exports_hold_no_names():
    modules = ModuleNames()
    modules.update([("srv/limits.go", "package srv\n\nconst (\n\tMaxSize = 3\n)\n\nfunc Serve() {}\n"),
                    ("pkg/api.py", "from .core import *\n\ndef extra():\n    pass\n")], [])
    names, spelled = modules.site('import "example.com/app/srv"\nsrv.')
    assert names == ["Serve"] and "MaxSize" in spelled
    assert modules.site("from pkg import api\napi.") == ([], [])


def test_a_name_begun_is_finished_even_past_the_likeliest_tokens(monkeypatch):
    monkeypatch.setattr(member_names, "CANDIDATES", 2)  # "l" is not among the two likeliest
    member = MemberConstraint(["trim_lines"], [], TEXTS, IDS)
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
    member = MemberConstraint(["Invoice", "trim_lines"], [], TEXTS, IDS)
    member.advance("t")  # only trim_lines begins so
    masked = member.mask(_logits("r"))  # the model would spell it letter by letter
    assert TEXTS[int(masked.argmax())] == "rim_li" and masked[TEXTS.index("r")] == float("-inf")


def test_a_local_name_that_shadows_the_module_holds_nothing():
    modules = ModuleNames()
    modules.update([("billing/helpers.py", HELPERS)], [])
    held = ["Invoice", "RATE", "trim_lines"]
    imports = "from billing import helpers\n\n\n"
    head = imports + "def total(rows):\n"
    for binding in ("    helpers = []\n", "    helpers: list = []\n", "    for helpers in rows:\n",
                    "    a, helpers = rows\n", "    with open(rows) as helpers:\n"):
        assert modules.site(head + binding + "    helpers.")[0] == [], binding
    assert modules.site(imports + "def total(helpers, rows):\n    helpers.")[0] == []
    go = "package main\n\nimport \"app/helpers\"\n\n"
    assert modules.site(go + "func main() {\n\thelpers := load()\n\thelpers.")[0] == []
    assert modules.site(go + "func run(n int, helpers Table) {\n\thelpers.")[0] == []
    js = "const helpers = require('./billing/helpers');\n"
    assert modules.site(js + "function f() {\n  let helpers = 1;\n  helpers.")[0] == []
    # not bindings: a keyword argument, a comparison, an attribute, another top-level function's local
    for code in ("    send(helpers=helpers)\n", "    if helpers == rows:\n        pass\n", "    self.helpers = rows\n"):
        assert modules.site(head + code + "    helpers.")[0] == held, code
    typed = "def total(rows: helpers.Invoice) -> helpers.Invoice:\n    return helpers."
    assert modules.site(imports + typed)[0] == held  # annotations use the module
    earlier = "def other():\n    helpers = 1\n\n\ndef total(rows):\n    return helpers."
    assert modules.site(imports + earlier)[0] == held
    assert modules.site(js + "helpers.")[0] == held
