"""`msa-lsp train fit` end to end on CPU with a tiny model: train from scratch, then continue from that checkpoint
with a fresh schedule and the FIM options (call-site middles, renaming, middle weight), as stage 3 does."""

import json
import lzma
from dataclasses import asdict

from inference.training.cli import main
from tests.training.test_middles import cross_file_projects


def test_fit_then_continue_from_the_checkpoint(tmp_path, tiny_config):
    data = tmp_path / "data"
    data.mkdir()
    with lzma.open(data / "train-python.jsonl.xz", "wt", encoding="utf-8") as fh:
        for project, files in cross_file_projects().items():
            for path, text in files:
                fh.write(json.dumps({"project": project, "path": path, "text": text}) + "\n")
    common = ["--data", str(data), "--python-site", "none", "--seq-len", "512", "--batch", "2", "--steps", "3",
              "--device", "cpu", "--row-threads", "1", "--skip-eval"]
    first = tmp_path / "stage1"
    config = json.dumps({k: v for k, v in asdict(tiny_config).items()})
    assert main(["fit", *common, "--out", str(first), "--model-config", config]) == 0
    assert (first / "config.json").exists()
    second = tmp_path / "stage3"
    assert main(["fit", *common, "--out", str(second), "--init-from", str(first), "--lr", "1e-3",
                 "--lr-warmup-steps", "1", "--warmup-frac", "0", "--fim-rate", "0.9", "--causal-rate", "0.1",
                 "--callsite-rate", "0.5", "--rename-rate", "0.5", "--middle-weight", "3"]) == 0
    report = json.loads((second / "training_report.json").read_text())
    assert report["steps"] == 3 and all(h["sparse"] for h in report["history"])
    assert any(h["ce_middle"] > 0 for h in report["history"])  # the rows carried FIM middles
    assert (second / "config.json").exists()


def test_a_deadline_spent_on_loading_stops_with_a_message(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with lzma.open(data / "train-python.jsonl.xz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"project": "p", "path": "a.py", "text": "x = 1\n"}) + "\n")
    try:
        main(["fit", "--data", str(data), "--python-site", "none", "--out", str(tmp_path / "o"), "--device", "cpu",
              "--deadline-minutes", "0.0001", "--reserve-minutes", "0"])
    except SystemExit as stop:
        assert "leaving no time to train" in str(stop.code)
    else:
        raise AssertionError("fit trained with no time left")


def test_skipping_past_all_the_python_stops_with_a_message(tmp_path):
    from inference.training.train import load_projects

    site = tmp_path / "site-packages" / "demo"
    site.mkdir(parents=True)
    for i in range(3):
        (site / f"mod{i}.py").write_text("".join(f"def function_{i}_{j}(value):\n    return value + {j}\n\n\n"
                                                 for j in range(40)))
    data = tmp_path / "data"
    data.mkdir()
    assert any(key.startswith("python:") for key in load_projects(data, str(site.parent), 10**6, 10**6))
    try:
        load_projects(data, str(site.parent), 10**6, 10**6, python_skip_bytes=10**9)
    except SystemExit as stop:
        assert "no Python would be trained on" in str(stop.code)
    else:
        raise AssertionError("a skip past all the Python went unnoticed")
