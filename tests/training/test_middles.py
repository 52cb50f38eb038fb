"""FIM middles in training rows: editor-shaped split points, call-site middles copied from included context
files, consistent identifier renaming, and the middle-weighted loss (real bundled tokenizer)."""

import random
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.file_summary import names_line
from inference.training import middles
from inference.training.batches import Encoder, RowBuilder, file_segment_text, fim_split
from inference.training.train import weighted_ce

SOURCE = Path(__file__).resolve().parents[2] / "inference" / "training" / "batches.py"


def cross_file_projects() -> dict:
    """Python and Go projects whose files call functions, classes and constants defined in their siblings."""
    projects = {}
    for p in range(3):
        files = []
        for f in range(4):
            other = (f + 1) % 4
            body = "".join(f"def compute_total_{p}_{f}_{k}(value, scale=2):\n    return value * scale + {k}\n\n"
                           for k in range(4))
            body += f"class RecordStore{p}{f}:\n    pass\n\n\n"
            body += (f"def run_{f}(items):\n    store = RecordStore{p}{other}()\n"
                     f"    total = compute_total_{p}_{other}_1(items, scale=3)\n"
                     f"    return compute_total_{p}_{other}_2(total)\n")
            files.append((f"pkg{p}/mod{f}.py", body))
        projects[f"python:proj{p}"] = files
    go = []
    for f in range(3):
        other = (f + 1) % 3
        go.append((f"srv/file{f}.go", f"package srv\n\nconst MaxRetries{f} = 3\n\nfunc ParseHeader{f}(raw string) string {{\n"
                                      f"\treturn raw\n}}\n\nfunc handle{f}(raw string) string {{\n"
                                      f"\tn := MaxRetries{other}\n\treturn ParseHeader{other}(raw) + string(rune(n))\n}}\n"))
    projects["go:srv"] = go
    return projects


def groups_of(enc: Encoder, row) -> list[dict]:
    """Per group of a row: the decoded context segments and the tail split at its FIM tokens."""
    out = []
    for g in sorted(set(row.grp[row.grp >= 0].tolist())):
        in_g = row.grp == g
        tail_ids = row.ids[in_g & row.tail].tolist()
        docs = sorted(set(row.doc[in_g & ~row.tail].tolist()) - {0})
        context = [enc.tok.decode(row.ids[in_g & (row.doc == d) & ~row.tail].tolist()) for d in docs]
        text = enc.tok.decode(tail_ids, skip_special_tokens=False)
        if "<|fim_middle|>" not in text:
            continue
        head, middle = text.split("<|fim_middle|>")
        prefix = head.split("<|fim_prefix|>")[1].split("<|fim_suffix|>")[0]
        suffix = head.split("<|fim_suffix|>")[1]
        out.append({"context": context, "prefix": prefix, "suffix": suffix, "header": head.split("<|fim_prefix|>")[0],
                    "middle": middle.replace("<|endoftext|>", "")})
    return out


def builder(tokenizer, seed: int, **options) -> tuple[Encoder, RowBuilder]:
    enc = Encoder(tokenizer)
    projects = cross_file_projects()
    names = options.get("segment_names", False)
    file_ids = {k: enc.many([file_segment_text(p, t, names) for p, t in v]) for k, v in projects.items()}
    return enc, RowBuilder(enc, projects, file_ids, T=2048, seed=seed, fim_rate=1.0, causal_rate=0.0, **options)


def test_call_site_middles_start_at_a_name_defined_in_an_included_context_file(tokenizer):
    enc, rows = builder(tokenizer, seed=1, callsite_rate=1.0, rename_rate=0.0)
    checked = 0
    for _ in range(12):
        for g in groups_of(enc, rows.row()):
            name = re.match(r"[ \t\n]*([A-Za-z_]\w*)", g["middle"])
            assert name, g["middle"]
            name = name.group(1)
            path = g["header"].replace("<|file_sep|>", "").strip()
            assert any(name in middles.defined_names(path, c.split("\n", 1)[1]) for c in g["context"]), (name, path)
            assert name not in middles.defined_names(path, g["prefix"] + g["middle"] + g["suffix"])
            assert not g["prefix"].endswith((" ", "\n", "\t")) or not g["middle"][:1].isspace()
            assert "\n" not in g["middle"].lstrip(" \t\n")  # runs to the end of the line, no further
            assert g["suffix"][:1] in ("\n", "")
            checked += 1
    assert checked >= 20


def test_renaming_is_consistent_across_files_and_leaves_no_old_name(tokenizer):
    enc, rows = builder(tokenizer, seed=2, callsite_rate=1.0, rename_rate=1.0)
    originals = {p: t for files in cross_file_projects().values() for p, t in files}
    renamed_groups = 0
    for _ in range(12):
        for g in groups_of(enc, rows.row()):
            path = g["header"].replace("<|file_sep|>", "").strip()
            target = g["prefix"] + g["middle"] + g["suffix"]
            old = middles.words_in(originals[path]) - middles.words_in(target)
            new = middles.words_in(target) - middles.words_in(originals[path])
            if not old:
                continue
            renamed_groups += 1
            assert 1 <= len(old) <= 3 and len(new) == len(old), (old, new)
            everything = [target] + g["context"]
            for name in old:
                assert not any(re.search(rf"(?<![\w$]){name}(?![\w$])", t) for t in everything), name
            for name in new:  # each fresh name is defined in an included context file, not in the target
                assert any(name in middles.defined_names(path, c.split("\n", 1)[1]) for c in g["context"]), name
                assert name not in middles.defined_names(path, target)
            assert middles.words_in(g["middle"]) & new or not middles.words_in(g["middle"]) & old
    assert renamed_groups >= 8


def test_names_lines_head_every_context_file_and_follow_the_renames(tokenizer):
    enc, rows = builder(tokenizer, seed=2, callsite_rate=1.0, rename_rate=1.0, segment_names=True)
    originals = {p: t for files in cross_file_projects().values() for p, t in files}
    segments = renamed = 0
    for _ in range(8):
        for g in groups_of(enc, rows.row()):
            for segment in g["context"]:
                path, line, code = segment.split("\n", 2)
                if code.count("\n") < originals[path].count("\n"):
                    continue  # cut at the row's end: its line lists the whole file's names
                assert line + "\n" == names_line(path, code) != "", segment[:200]
                segments += 1
                renamed += code != originals[path]
    assert segments >= 30 and renamed >= 8


def test_many_renames_reach_the_target_own_names_and_mark_the_copied_tokens(tokenizer):
    enc, rows = builder(tokenizer, seed=4, callsite_rate=1.0, rename_rate=1.0, rename_names=8, rename_own=True)
    originals = {p: t for files in cross_file_projects().values() for p, t in files}
    own_renamed = marked = 0
    for _ in range(12):
        row = rows.row()
        for g in groups_of(enc, row):
            path = g["header"].replace("<|file_sep|>", "").strip()
            target = g["prefix"] + g["middle"] + g["suffix"]
            new = middles.words_in(target) - middles.words_in(originals[path])
            own_renamed += len(new & middles.defined_names(path, target))
        cross = {n for g in groups_of(enc, row) for c in g["context"]
                 for n in middles.defined_names(*c.split("\n", 1))}
        at = np.flatnonzero(row.copy)
        runs = np.split(at, np.flatnonzero(np.diff(at) > 1) + 1) if len(at) else []
        for run in runs:  # each run of marked predictions spells a name defined in an included context file
            word = enc.tok.decode(row.labels[run].tolist()).strip()
            assert word in cross or any(part in cross for part in word.split()), (word, cross)
        assert (row.labels[row.copy] >= 0).all() and not (row.copy & ~row.tail).any()
        marked += int(row.copy.sum())
    assert own_renamed >= 5 and marked >= 20


def test_copy_weight_raises_the_weight_of_marked_tokens():
    torch.manual_seed(1)
    logits, labels = torch.randn(1, 12, 30), torch.randint(0, 30, (1, 12))
    middle, copy = torch.zeros(1, 12, dtype=torch.bool), torch.zeros(1, 12, dtype=torch.bool)
    middle[0, 2:5], copy[0, 4:8] = True, True
    per = F.cross_entropy(logits.view(-1, 30), labels.view(-1), reduction="none").view(1, 12)
    weight = torch.ones(1, 12)
    weight[middle], weight[copy] = 3.0, 4.0  # the larger of the two where they overlap
    loss, _, _ = weighted_ce(logits, labels, middle, 3.0, copy, 4.0)
    assert torch.allclose(loss, (per * weight).sum() / weight.sum())
    assert torch.allclose(weighted_ce(logits, labels, middle, 3.0, copy, 1.0)[0], weighted_ce(logits, labels, middle, 3.0)[0])


def test_rename_is_whole_word_and_keeps_the_naming_style():
    rng = random.Random(0)
    words = ["amber", "cobalt", "meadow", "quartz"]
    assert middles.fresh_name("parse_header", words, rng, set()).count("_") >= 1
    assert middles.fresh_name("ParseHeader", words, rng, set())[0].isupper()
    assert middles.fresh_name("MAX_RETRIES", words, rng, set()).isupper()
    camel = middles.fresh_name("parseHeader", words, rng, set(), snake=False)
    assert camel[0].islower() and "_" not in camel and any(c.isupper() for c in camel)
    texts = middles.rename(["x = parse(a); reparse(b); parse_all(c); obj.parse(d)"], {"parse": "load_thing"})
    assert texts == ["x = load_thing(a); reparse(b); parse_all(c); obj.load_thing(d)"]


def test_split_points_sit_at_token_boundaries_and_match_healing():
    text = SOURCE.read_text()
    rng = random.Random(5)
    inside_word = healed = total = 0
    for _ in range(2000):
        pre, mid, suf = fim_split(text, rng)
        assert pre + mid + suf == text and mid
        total += 1
        if pre and mid and (pre[-1].isalnum() or pre[-1] == "_") and (mid[0].isalnum() or mid[0] == "_"):
            inside_word += 1
        healed += not pre.endswith((" ", "\t", "\n"))
    assert inside_word / total < 0.08, inside_word
    assert healed / total > 0.8, healed


def test_row_marks_exactly_the_middle_predictions(tokenizer):
    enc, rows = builder(tokenizer, seed=3, callsite_rate=0.5, rename_rate=0.0)
    row = rows.row()
    fim_middle = enc.special["<|fim_middle|>"]
    expected = np.zeros_like(row.middle)
    for at in np.flatnonzero((row.ids == fim_middle) & row.tail):
        end = at
        while row.ids[end] != enc.eot:
            end += 1
        expected[at:end] = True  # positions whose label is a middle token or the closing <|endoftext|>
    assert row.middle.any() and (row.middle == expected).all()
    assert (row.labels[row.middle] >= 0).all()


def test_middle_weight_scales_the_middle_tokens_in_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 16, 50)
    labels = torch.randint(0, 50, (2, 16))
    labels[:, -1] = -100
    middle = torch.zeros(2, 16, dtype=torch.bool)
    middle[0, 4:9] = True
    plain = F.cross_entropy(logits.view(-1, 50), labels.view(-1), ignore_index=-100)
    loss1, ce1, _ = weighted_ce(logits, labels, middle, 1.0)
    assert torch.allclose(loss1, plain) and torch.allclose(ce1, plain)
    per = F.cross_entropy(logits.view(-1, 50), labels.view(-1), ignore_index=-100, reduction="none").view(2, 16)
    real = (labels >= 0).float()
    weight = real + 2.0 * middle.float()
    loss3, ce3, mid = weighted_ce(logits, labels, middle, 3.0)
    assert torch.allclose(loss3, (per * weight).sum() / weight.sum())
    assert torch.allclose(ce3, plain) and torch.allclose(mid, per[middle].mean())
    # a model that is worse on the middle pays more under the weighted loss than under the plain one
    assert (loss3 > plain) == (per[middle].mean() > plain)


def test_heldout_middle_scores_count_every_middle(tokenizer, tiny_config):
    from inference.training.evaluate import middle_scores
    from inference.training.model import MSAForTraining

    torch.manual_seed(0)
    enc = Encoder(tokenizer)
    projects = cross_file_projects()
    file_ids = {k: enc.many([f"<|file_sep|>{p}\n{t}" for p, t in v]) for k, v in projects.items()}
    scores = middle_scores(MSAForTraining(tiny_config), enc, projects, file_ids, torch.device("cpu"), 1024, rows=2)
    assert set(scores) == {"editor", "call_site", "renamed_call_site"}
    for kind in scores.values():
        assert kind["middles"] >= 2 and kind["tokens"] >= kind["middles"]
        assert kind["ce"] > 5.0 and kind["exact"] == 0.0  # an untrained model: near-uniform over 16k tokens
