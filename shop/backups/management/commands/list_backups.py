import json

import psycopg
from django.core.management.base import BaseCommand, CommandError

from shop.backups.errors import BackupError
from shop.backups.inventory import list_sets
from shop.backups.management.commands import skip_collection_at_exit
from shop.backups.progress import human_bytes


def _flag(value: bool | None, yes: str, no: str, unknown: str = "-") -> str:
    return unknown if value is None else (yes if value else no)


class Command(BaseCommand):
    # The system checks load every URLconf, view and admin (~0.3 s, ~10 MB) and check
    # nothing a backup relies on; `manage.py check` and the web processes run them.
    requires_system_checks = []

    help = "List backup sets: ID, age, size, where they are and whether they are verified."

    def add_arguments(self, parser):
        parser.add_argument("--source", choices=["local", "s3", "all"], default="all")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, source, json, **options):
        skip_collection_at_exit()
        try:
            sets, problems = list_sets(source)
        except (BackupError, psycopg.Error) as exc:
            raise CommandError(str(exc)) from exc
        for problem in problems:
            self.stderr.write(self.style.ERROR(problem))
        if json:
            self.stdout.write(_dumps([info.as_json() for info in sets]))
            return
        if not sets:
            self.stdout.write(f"No backup sets ({source}).")
            return
        self.stdout.write(f"{'ID':<17} {'AGE':>8} {'SIZE':>10}  {'CONTENTS':<11} LOCAL          S3")
        for info in sets:
            local = _flag(info.local_verified, "verified", "CORRUPT", "unchecked") if info.local else "-"
            remote = _flag(info.s3_intact, "intact", "DAMAGED", "present") if info.s3 else "-"
            if not info.s3 and info.local and info.offsite_error:
                remote = "NOT OFFSITE"
            self.stdout.write(
                f"{info.id:<17} {_age(info.age_seconds):>8} {human_bytes(info.size):>10}  "
                f"{'+'.join(info.contents):<11} {local:<14} {remote}"
            )


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _dumps(data) -> str:
    return json.dumps(data, indent=2)
