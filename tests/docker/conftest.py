"""The compose stacks run for real under a Docker engine. A developer without Docker gets a skip
that says why; under CI (CI=true) a missing engine is a failure, never a skip. These tests run
after all the others (they take minutes; the order is set in tests/conftest.py)."""

import os

import pytest

from tests.docker.compose_project import docker_missing


@pytest.fixture(scope="session")
def docker_engine():
    reason = docker_missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the compose stacks, but {reason} (.ci/run sets the engine up)")
    pytest.skip(f"{reason}: the compose stacks run under CI (.ci/run; README 'Tests of the compose stacks')")
