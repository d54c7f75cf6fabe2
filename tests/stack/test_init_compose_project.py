"""`make init` and Docker's volumes: a compose project per checkout, a loud stop when a volume
is bound elsewhere, and BACKUP_PATH closed to other users whoever runs it."""

import os
import shutil
import stat
from pathlib import Path

from ops import init_stack
from tests.stack.compose import PROJECT_ROOT


def checkout(parent: Path, name: str) -> Path:
    root = parent / name / "shop"
    root.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / ".env.example", root / ".env.example")
    return root


def test_each_checkout_gets_its_own_compose_project(tmp_path):
    first, second = checkout(tmp_path, "one"), checkout(tmp_path, "two")
    init_stack.ensure_env_file(first)
    init_stack.ensure_env_file(second)
    names = [init_stack.read_env_file(root / ".env")["COMPOSE_PROJECT_NAME"] for root in (first, second)]
    assert names[0] != names[1]
    assert all(name.startswith("shop-shop-") for name in names)


def test_an_old_env_file_gets_a_project_name_and_nothing_else_changes(tmp_path):
    root = checkout(tmp_path, "old")
    (root / ".env").write_text("DATA_PATH=/srv/shop\nPOSTGRES_PASSWORD=kept\n")
    name = init_stack.add_missing_project_name(root)
    values = init_stack.read_env_file(root / ".env")
    assert values == {"DATA_PATH": "/srv/shop", "POSTGRES_PASSWORD": "kept", "COMPOSE_PROJECT_NAME": name}
    assert init_stack.add_missing_project_name(root) is None


def test_volumes_bound_to_other_directories_are_named(tmp_path):
    expected = {"postgres_data": tmp_path / "new" / "postgres", "uploads": tmp_path / "new" / "uploads"}
    docker_says = {
        "p_postgres_data": {"type": "none", "o": "bind", "device": str(tmp_path / "old" / "postgres")},
        "p_uploads": {"type": "none", "o": "bind", "device": str(tmp_path / "new" / "uploads")},
    }
    problems = init_stack.stale_volumes("p", expected, inspect=docker_says.get)
    assert problems == [
        f"volume p_postgres_data is bound to {tmp_path}/old/postgres, but .env says {tmp_path}/new/postgres"
    ]
    assert init_stack.stale_volumes("q", expected, inspect=docker_says.get) == []  # no volumes yet


def test_backup_path_is_closed_to_others_whatever_the_umask(tmp_path):
    """As root (`make init` on a server, and CI) the directory is given to the image's user."""
    owner = (10001, 10001) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    old_umask = os.umask(0o000)
    try:
        init_stack.create_data_dirs(tmp_path / "data", tmp_path / "backups", app_owner=owner)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) == 0o750
    (tmp_path / "backups").chmod(0o755)  # e.g. made by an older version
    init_stack.create_data_dirs(tmp_path / "data", tmp_path / "backups")
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) == 0o750
