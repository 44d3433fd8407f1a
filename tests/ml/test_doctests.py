"""The examples in the `ml` package's docstrings run, and hold: every module's doctests pass, and there are some."""

import doctest
import importlib

import pytest

from tests.ml.test_purity import ml_modules

MODULES = ml_modules()


@pytest.mark.parametrize("name", MODULES)
def test_the_module_s_examples_hold(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (run doctest -v)"


def test_there_are_examples_where_they_teach_most():
    attempted = {
        name: doctest.testmod(
            importlib.import_module(name), report=False, optionflags=doctest.NORMALIZE_WHITESPACE
        ).attempted
        for name in MODULES
    }
    assert sum(attempted.values()) > 0
    # The configs (their fields, defaults and checks) and the losses are what a newcomer reads first.
    for name in ("ml.config", "ml.reward", "ml.sft", "ml.dpo", "ml.ppo"):
        assert attempted[name] > 0, f"{name} has no examples"
