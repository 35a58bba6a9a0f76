"""The examples in the public docstrings are what the code gives: run them as doctests (issue 16, item 5)."""
import doctest

import pytest

import schedx.finder
import schedx.lr_scheduler
import schedx.schedules

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("module", [schedx.schedules, schedx.finder], ids=lambda m: m.__name__)
def test_module_docstring_examples_give_the_values_they_show(module):
    results = doctest.testmod(module, optionflags=FLAGS, verbose=False, report=True)
    assert results.attempted > 0
    assert results.failed == 0


def test_every_public_schedule_function_has_an_example():
    missing = [
        name for name in schedx.schedules.__all__
        if ">>>" not in (getattr(schedx.schedules, name).__doc__ or "")
    ]
    assert missing == []


def test_schedule_lr_docstring_example_gives_the_lrs_it_shows():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = [t for t in finder.find(schedx.lr_scheduler.ScheduleLR, "ScheduleLR") if t.examples]
    assert tests
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0
