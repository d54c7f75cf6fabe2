"""Fixtures of the stack tests: the machine's programs, skipped or failed by one rule
(tests/stack/programs.py), and the runner's stack: a fresh one per test, or one started stack
shared by the tests that only use it."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import programs
from tests.stack.runner import StackRunner, fresh_stack

STACK_TESTS = Path(__file__).parent


@pytest.fixture
def stack_programs():
    """The PostgreSQL server, Redis and nginx the runner starts (skip, or fail on CI, without)."""
    return programs.stack_programs()


@pytest.fixture
def nginx():
    """The nginx binary (skip, or fail on CI, without)."""
    return programs.nginx_program()


@pytest.fixture
def stack(tmp_path, stack_programs):
    """A fresh runner stack (not started) in a data root of its own, everything stopped afterwards."""
    with fresh_stack(tmp_path / "stack.log") as runner:
        yield runner


@pytest.fixture(scope="package")
def shared_stack(tmp_path_factory) -> Iterator[StackRunner]:
    """One started stack for the tests that neither stop it nor change its settings (starting
    one takes a while). Each test makes data of its own (names no other test uses). Its data
    is thrown away afterwards: no orderly stop (the tests of a fresh `stack` check that)."""
    programs.stack_programs()  # skip, or fail on CI, without them
    log = tmp_path_factory.mktemp("shared-stack") / "stack.log"
    with fresh_stack(log, graceful_stop=False) as runner:
        runner.start()
        yield runner


def pytest_collection_modifyitems(items):
    """The tests on the shared stack last in this folder, one after the other: the stack is
    stopped right after them (at the folder's end) instead of idling through other tests."""
    users = [item for item in items if uses_shared_stack(item)]
    others = [item for item in items if not uses_shared_stack(item)]
    here = [index for index, item in enumerate(others) if item.path.is_relative_to(STACK_TESTS)]
    at = here[-1] + 1 if here else len(others)
    items[:] = others[:at] + users + others[at:]


def uses_shared_stack(item) -> bool:
    return "shared_stack" in getattr(item, "fixturenames", ())
