"""Shared fixtures for the training tests: the bundled tokenizer and a tiny model configuration."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "inference" / "bundled" / "tokenizer.json"


@pytest.fixture(scope="session")
def tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TOKENIZER))


@pytest.fixture
def tiny_config():
    from inference.training.model import ModelConfig

    return ModelConfig(vocab_size=16384, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, index_dim=8,
                       block_size=128, topk_blocks=3, sparse_layers=[0, 1, 1])


def synthetic_projects(n_projects: int = 4, n_files: int = 4) -> dict:
    """Small multi-file projects where each file calls functions defined in its siblings."""
    projects = {}
    for p in range(n_projects):
        files = []
        for f in range(n_files):
            other = (f + 1) % n_files
            body = "".join(
                f"def helper_{p}_{f}_{k}(value):\n    return value * {k + 2} + {f}\n\n" for k in range(6)
            )
            body += f"from mod{other} import helper_{p}_{other}_0\n\nresult = helper_{p}_{other}_0(3)\n"
            files.append((f"pkg{p}/mod{f}.py", body))
        projects[f"python:proj{p}"] = files
    return projects
