"""The Makefile's Docker targets on a machine without Docker: they say what is missing and
point to `make run`, before `make init` has written anything."""

import shutil
import subprocess

import pytest

from tests.stack.compose import PROJECT_ROOT


@pytest.mark.parametrize("target", ["up", "prod-up", "down"])
def test_docker_targets_without_docker_say_what_is_missing(tmp_path, target):
    make, python = shutil.which("make"), shutil.which("python3")
    if not make or not python:
        pytest.skip("make and python3 are needed to run the Makefile")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("Makefile", ".env.example"):
        shutil.copy(PROJECT_ROOT / name, checkout / name)
    tools = tmp_path / "bin"  # a PATH with make and python3, and no docker
    tools.mkdir()
    for tool in (make, python, shutil.which("sh")):
        (tools / tool.rsplit("/", 1)[1]).symlink_to(tool)

    result = subprocess.run(
        [make, target], cwd=checkout, env={"PATH": str(tools)}, capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert "Docker is not installed" in result.stdout
    assert "make run" in result.stdout
    assert "No such file or directory" not in result.stdout + result.stderr
    assert not (checkout / ".env").exists(), "nothing written before the check"
