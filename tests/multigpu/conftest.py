"""Fixtures for the context-parallel tests: the tiny random checkpoints of tests/inference, reused as they are."""

from tests.inference.conftest import msa_model, tiny_models  # noqa: F401  (pytest fixtures)
