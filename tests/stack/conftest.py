"""Fixtures of the stack tests: the machine's programs, skipped or failed by one rule
(tests/stack/programs.py)."""

import pytest

from tests.stack import programs
from tests.stack.runner import fresh_stack


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
