"""Fixtures of the stack tests: the machine's programs, skipped or failed by one rule
(tests/stack/programs.py)."""

import pytest

from tests.stack import programs


@pytest.fixture
def stack_programs():
    """The PostgreSQL server, Redis and nginx the runner starts (skip, or fail on CI, without)."""
    return programs.stack_programs()


@pytest.fixture
def nginx():
    """The nginx binary (skip, or fail on CI, without)."""
    return programs.nginx_program()
