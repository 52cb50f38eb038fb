"""Fixtures for the context-parallel tests: the tiny random checkpoints of tests/inference and tests/worker, reused."""

from tests.inference.conftest import msa_model, tiny_models  # noqa: F401  (pytest fixtures)
from tests.worker.conftest import tiny_model  # noqa: F401
