"""`make pitr-restore TO="2026-11-28 10:15:00+00"`: restore the compose stack's database to a
time (or TO=latest), with the product images the restored rows name (README "Point-in-time
recovery in compose"). Standard library only: it drives `docker compose` from the host.

1. Plan (the pitr-restore one-shot: `pgbackrest info` of the repositories). Without --repo, the
   repository is chosen as `restore_backup --to` chooses it (shop/backups/pitr/repository.py):
   repo1, the backup volume, unless only repo2, S3, can serve the target (the backup volume lost,
   or its WAL behind); the plan says which and why.
   --dry-run stops here; otherwise it asks (unless --yes).
2. Stop the shop's services, nginx, wal-switch, pgbackrest-db and the database (redis and pgbackrest-repo
   keep running).
3. The one-shot restores the newest physical backup before TO into a new directory inside the
   postgres_data volume (pitr/restore-<stamp>), replays the archived WAL up to TO on a temporary
   server and checks it. The live cluster is not touched.
4. The shop image (`manage.py pitr_images`) reads the image names from the restored rows and
   brings each image into the uploads volume from the blob store (or from S3 when the blob store
   lacks it), its SHA-256 checked.
5. Only then the switch: the live cluster's files move to pitr/before-<stamp> (kept for
   rollback), the restored ones take their place.
6. Start the database and everything else again (`docker compose up --wait`).

Any failure before the switch: the restored copy is deleted, the services start again on the
untouched live data, and the exit status is 1. Compose files: as `docker compose` finds them
(COMPOSE_FILE, e.g. docker-compose.yml:docker-compose.prod.yml for production).
"""

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from ops.init_stack import setting  # noqa: E402 (the project root on the path first)
from shop.backups.pitr import repository  # noqa: E402 (plain module: no Django)

STOPPED = ["nginx", "backend", "worker", "beat", "backup", "wal-switch", "pgbackrest-db", "database"]
READY_MARK = "shop-pitr-restore: READY"
# The archive ended before the target (the newest WAL was lost with the server): restored to its end.
END_OF_ARCHIVE_MARK = "shop-pitr-restore: END OF ARCHIVE"


class Failed(Exception):
    pass


def compose(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", "compose", *args], cwd=PROJECT_ROOT, text=True, capture_output=capture, check=False
    )
    if check and result.returncode != 0:
        detail = f":\n{result.stdout}{result.stderr}" if capture else ""
        raise Failed(f"docker compose {' '.join(args)} exited with {result.returncode}{detail}")
    return result


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], text=True, capture_output=True, check=False)
    if check and result.returncode != 0:
        raise Failed(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def say(text: str) -> None:
    print(f"pitr-restore: {text}", flush=True)


def running(container: str) -> bool:
    state = json.loads(docker("inspect", container).stdout)[0]["State"]
    return state["Running"]


def wait_until_ready(container: str) -> int:
    """Until the one-shot says READY (how many lines of its output were shown); Failed (with
    its output) when it ends first."""
    shown = 0
    while True:
        output = docker("logs", container).stdout
        lines = output.splitlines()
        for line in lines[shown:]:
            print(f"  {line}", flush=True)
        shown = len(lines)
        if READY_MARK in output:
            return shown
        if not running(container):
            errors = docker("logs", container).stderr.strip()
            raise Failed(f"the restore did not get as far as the switch:\n{errors}")
        time.sleep(2)


def finish(container: str, shown: int) -> int:
    """Wait for the one-shot to end; its exit status, after the rest of its output."""
    status = int(docker("wait", container).stdout.strip() or 1)
    logs = docker("logs", container)
    for line in logs.stdout.splitlines()[shown:] + logs.stderr.splitlines():
        print(f"  {line}", flush=True)
    return status


def restore(target: str, stamp: str, repo: str) -> str:
    """The restore (steps 2-6); where the database is now: the target or the end of the archive."""
    project = setting("COMPOSE_PROJECT_NAME", "shop", PROJECT_ROOT)
    # Reached by this name over the compose network: one DNS label, at most 63 characters.
    container = f"{project[:40]}-pitr-{stamp.lower()}"
    say(f"stopping {', '.join(STOPPED)}")
    compose("stop", *STOPPED)
    switched = False
    try:
        compose(
            "run", "--detach", "--name", container,
            "pitr-restore", "recover", target, stamp, repo, capture=True,
        )  # fmt: skip
        try:
            shown = wait_until_ready(container)
            if END_OF_ARCHIVE_MARK in docker("logs", container).stdout:
                reached = f"the end of the archive, before {target} (the newer WAL was lost)"
            else:
                reached = target
            say("bringing the images the restored rows name into the uploads volume")
            images = compose(
                "run", "--rm", "--no-deps", "backend",
                "python", "manage.py", "pitr_images", "--host", container, check=False,
            )  # fmt: skip
            if images.returncode != 0:
                docker(
                    "exec",
                    container,
                    "shop-pitr-restore",
                    "decide",
                    "abort: the images could not be brought back",
                )
                finish(container, shown)
                raise Failed("the images named by the restored rows could not all be brought back (above)")
            docker("exec", container, "shop-pitr-restore", "decide", "switch")
            if finish(container, shown) != 0:
                raise Failed(
                    "the switch of the data directories failed (above); the database's entrypoint "
                    "completes an interrupted switch when it starts"
                )
            switched = True
        finally:
            docker("rm", "--force", container, check=False)
    finally:
        say("starting the stack again" + ("" if switched else " on the untouched live data"))
        # After a failure, a stack that cannot start (its data directory was the disaster) must not
        # hide the reason the restore stopped, which is raised once this block ends.
        started = compose("up", "--detach", "--wait", check=switched)
        if started.returncode != 0:
            say(
                "the stack did not become healthy again: if the live data directory was lost, the "
                "database cannot start until a restore succeeds (see the reason below)"
            )
    return reached


def choose_repository(target: str) -> str:
    """The repository a restore to `target` reads, from every repository's `pgbackrest info`."""
    shown = compose("run", "--rm", "--no-deps", "pitr-restore", "info", capture=True)
    try:
        stanza = next(entry for entry in json.loads(shown.stdout) if entry.get("name") == "shop")
    except (ValueError, StopIteration):
        detail = f"{shown.stdout}{shown.stderr}"
        raise Failed(f"pgbackrest info gave no state of the stanza shop:\n{detail}") from None
    moment = None if target == "latest" else datetime.fromisoformat(target)
    try:
        choice = repository.choose(stanza, moment)
    except repository.NoRepository as exc:
        raise Failed(str(exc)) from None
    for line in choice.lines:
        say(line)
    return str(choice.repo)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--to", required=True, help='a time with its UTC offset ("2026-11-28 10:15:00+00") or latest'
    )
    parser.add_argument(
        "--repo",
        choices=["1", "2"],
        help="restore from 1, the backup volume, or 2, S3 (default: the one that can serve the target, "
        "the backup volume when both can)",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the plan; stop nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask")
    args = parser.parse_args(argv)
    target = args.to.strip()
    if target.lower() != "latest":
        try:
            moment = datetime.fromisoformat(target)
        except ValueError:
            parser.error(f'--to {target!r} is not a time: give one like "2026-11-28 10:15:00+00", or latest')
        if moment.tzinfo is None:
            parser.error(f'--to {target!r} has no UTC offset: add one, e.g. "{target}+00" for UTC')
        if moment > datetime.now(UTC):
            parser.error(f"--to {target!r} is in the future: use latest for the newest state")
    else:
        target = "latest"
    try:
        repo = args.repo or choose_repository(target)
        say(f"the plan for a restore to {target} from repo{repo}:")
        compose("run", "--rm", "--no-deps", "pitr-restore", "plan", target, repo)
        if args.dry_run:
            say("dry run: nothing was stopped or changed")
            return 0
        if not args.yes:
            answer = input(
                "This stops the shop and its database, and replaces the database with its state at "
                f"{target} (the current one is kept in the data volume's pitr/). Type 'yes' to continue: "
            )
            if answer.strip() != "yes":
                say("not confirmed: nothing changed")
                return 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        reached = restore(target, stamp, repo)
    except Failed as exc:
        print(f"pitr-restore: FAILED: {exc}", file=sys.stderr)
        return 1
    say(
        f"done: the database is at {reached}; the previous cluster is kept in "
        f"DATA_PATH/postgres/pitr/before-{stamp}"
    )
    say("take a full physical backup soon (the restore started a new timeline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
