"""Shared fixtures: a tiny real set made once per session from the smoke target.

Markers: ``slow`` for tests that run the loop, Ray or a training of more than a few steps;
``pytest -m "not slow"`` is the fast subset.
"""

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pytest  # noqa: E402

from smoke import SMOKE  # noqa: E402


#: modules whose tests run the loop, Ray, Tune or the CLI end to end
SLOW_MODULES = {"test_bench_loop", "test_cli", "test_command", "test_example_plugins", "test_faults",
                "test_faults_data", "test_faults_real", "test_real_paths", "test_runner", "test_target_cli", "test_tune"}
#: tests elsewhere that run many evaluations (the conformance suite's learning check)
SLOW_TESTS = {"test_beats_random"}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs the loop, Ray or a real training (deselect with -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def smoke_real(tmp_path_factory):
    """A 6 + 6 image real set of the smoke target (``evaluator.real`` for tiny runs)."""
    from loop.config import load_config
    from loop.engine.target import make_target

    out = tmp_path_factory.mktemp("smoke-real") / "target"
    make_target(load_config(SMOKE, ["target.val=6", "target.test=6"]), out, workers=0, progress=False)
    return out
