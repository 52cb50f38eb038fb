"""Fixtures for the context-parallel tests: the tiny random checkpoints of tests/inference and tests/worker, reused."""

from tests.inference.conftest import msa_model, tiny_models  # noqa: F401  (pytest fixtures)
from tests.worker.conftest import tiny_model  # noqa: F401


def pytest_runtest_logreport(report):
    """Print a failure as it happens: a GPU run killed at its time limit never reaches pytest's summary."""
    if report.failed:
        import sys
        sys.stderr.write(f"\nFAILED {report.nodeid} ({report.when}):\n{report.longreprtext}\n")
        sys.stderr.flush()
