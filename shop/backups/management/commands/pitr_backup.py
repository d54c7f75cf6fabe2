"""`manage.py pitr_backup`: a pgBackRest physical backup now, as the beat task `pitr_backup` takes
them; `--missing`: the stanza made where it is missing, and a backup only to the repositories that
hold none yet (the runner's first start, or a repository that was lost)."""

from django.core.management.base import BaseCommand, CommandError

from shop.backups.pitr.pgbackrest import PitrError
from shop.backups.pitr.physical import KINDS, make_stanza, repositories_without_backup, run_physical_backup


class Command(BaseCommand):
    requires_system_checks = []
    help = (
        "Take a pgBackRest physical backup (point-in-time recovery) to every repository, recorded "
        "for the monitoring."
    )

    def add_arguments(self, parser):
        parser.add_argument("--type", dest="kind", choices=KINDS, default="full", help="default: full")
        parser.add_argument(
            "--missing",
            action="store_true",
            help="make the stanza where it is missing; back up only to the repositories that hold no backup",
        )

    def handle(self, *args, kind, missing, **options):
        try:
            if missing:
                make_stanza()
            repos = repositories_without_backup() if missing else None
            if repos == []:
                self.stdout.write("Every repository holds a backup: nothing to do.")
                return
            outcome = run_physical_backup(kind, repos)
        except PitrError as exc:
            raise CommandError(f"the physical backup failed: {exc}") from exc
        where = ", ".join(f"repo{repo}" for repo in repos) if repos else "every repository"
        self.stdout.write(f"pgBackRest {kind} backup to {where} done in {outcome['duration_seconds']} s.")
