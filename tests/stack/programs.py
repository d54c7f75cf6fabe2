"""The programs the stack tests need from the machine, and the one rule for a missing one.

On a developer's machine a missing PostgreSQL server, Redis or nginx skips the tests that need
it, saying what to install. On CI (CI=true in the environment) it fails them: CI must run every
test, and a skip there would hide that the stack was never tested.
"""

import os
from collections.abc import Mapping
from typing import NoReturn

import pytest

from ops import nginx_config, runner


def on_ci(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in {"true", "1", "yes"}


def skip_or_fail(reason: str, environ: Mapping[str, str] | None = None) -> NoReturn:
    if on_ci(environ):
        pytest.fail(f"{reason}\n(CI=true: on CI a missing program is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def stack_programs() -> runner.Programs:
    """Everything the Docker-less runner starts: the PostgreSQL server, Redis and nginx."""
    try:
        return runner.find_programs()
    except runner.RunnerError as error:
        skip_or_fail(str(error))


def nginx_program() -> str:
    nginx = nginx_config.find_nginx()
    if nginx is None:
        skip_or_fail(f"nginx is not installed: install {runner.INSTALL_HINTS['nginx']}")
    return nginx


CHROMIUM = "/usr/bin/chromium"


def chromium_program() -> str:
    """Debian's Chromium, which the browser tests (tests/browser) drive through Playwright.
    Playwright's own browser downloads are not used: our machines reach no download host."""
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail(f"Chromium is not installed at {CHROMIUM}: install it with `apt-get install chromium`")
    return CHROMIUM
