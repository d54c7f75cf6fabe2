"""The one rule for a program the stack tests need and the machine lacks: skip on a developer's
machine, fail on CI (tests/stack/programs.py)."""

import pytest

from ops import nginx_config
from tests.stack import programs


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("True", True), ("", False), ("false", False)]
)
def test_ci_is_told_by_the_ci_variable(value, expected):
    assert programs.on_ci({"CI": value}) is expected
    assert programs.on_ci({}) is False


def test_a_missing_program_skips_on_a_developer_machine_saying_what_to_install(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(nginx_config, "find_nginx", lambda: None)  # as on a machine without nginx

    with pytest.raises(pytest.skip.Exception, match="apt-get install nginx-light"):
        programs.stack_programs()
    with pytest.raises(pytest.skip.Exception, match="apt-get install nginx-light"):
        programs.nginx_program()


def test_a_missing_program_fails_on_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(nginx_config, "find_nginx", lambda: None)

    with pytest.raises(pytest.fail.Exception, match="nginx-light"):
        programs.stack_programs()
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        programs.nginx_program()


def test_without_chromium_the_browser_tests_skip_on_a_developer_machine_and_fail_on_ci(monkeypatch):
    monkeypatch.setattr(programs, "CHROMIUM", "/nonexistent/chromium")

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        programs.chromium_program()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        programs.chromium_program()
