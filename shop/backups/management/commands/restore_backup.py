import psycopg
from django.core.management.base import BaseCommand, CommandError

from shop.backups.errors import BackupError
from shop.backups.management.commands import IDENTITY_HELP, skip_collection_at_exit
from shop.backups.progress import reporter_for
from shop.backups.recovery import recover
from shop.backups.restore import restore


class Command(BaseCommand):
    # The system checks load every URLconf, view and admin (~0.3 s, ~10 MB) and check
    # nothing a backup relies on; `manage.py check` and the web processes run them.
    requires_system_checks = []

    help = (
        "Restore a backup set: verify every checksum, stage it (a new database, a hidden directory in "
        "MEDIA_ROOT), then swap it in, all or nothing, keeping the previous database and uploads "
        "for rollback."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("set_id", nargs="?", help="the set ID, e.g. 20261128T020000Z")
        which.add_argument("--latest", action="store_true", help="the newest set")
        which.add_argument(
            "--to",
            metavar="TIME",
            help='point-in-time recovery (pgBackRest): "2026-11-28 10:15:00+00" or latest; needs '
            "PITR_ENABLED and the live PostgreSQL stopped (`python -m ops.runner restore --to ...` "
            "does both)",
        )
        which.add_argument(
            "--recover",
            action="store_true",
            help="finish or undo a restore that was killed halfway (the next backup or restore does it too)",
        )
        parser.add_argument(
            "--repo",
            type=int,
            choices=[1, 2],
            help="with --to: the pgBackRest repository to restore from (1: the backup volume, 2: S3); "
            "default: the one that can serve the time, repo1 when both can",
        )
        parser.add_argument("--source", choices=["local", "s3"], help="default: local, else S3")
        parser.add_argument("--only", choices=["db", "uploads"], help="restore only the database or uploads")
        parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument("--identity", metavar="FILE", help=IDENTITY_HELP)

    def handle(
        self,
        *args,
        set_id,
        latest,
        to,
        recover,
        repo,
        source,
        only,
        dry_run,
        yes,
        identity,
        verbosity,
        **options,
    ):
        skip_collection_at_exit()
        if repo is not None and to is None:
            raise CommandError("--repo chooses a pgBackRest repository: it goes with --to TIME")
        if recover:
            self._recover(verbosity)
            return
        if to is not None:
            self._restore_to_time(to, repo, dry_run, yes, verbosity, identity)
            return
        # --verbosity 0 prints nothing, but a plan that needs a confirmation is always shown.
        self.quiet = verbosity == 0 and yes and not dry_run
        try:
            summary = restore(
                set_id,
                source,
                only,
                dry_run=dry_run,
                confirm=lambda: yes or self._confirm(),
                show=self._show_plan,
                report=reporter_for(self.stdout, verbosity),
                identity=identity,
                confirmed=yes,
            )
        except (BackupError, psycopg.Error) as exc:
            raise CommandError(f"restore failed: {exc}") from exc
        if summary is None:
            self.stdout.write(f"{'Dry run' if dry_run else 'Cancelled'}: nothing was changed.")
            return
        if self.quiet:
            return
        for line in summary:
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("Restore complete."))

    def _restore_to_time(self, to, repo, dry_run, yes, verbosity, identity):
        from shop.backups.pitr.restore import restore_to_time

        self.quiet = verbosity == 0 and yes and not dry_run
        try:
            summary = restore_to_time(
                to,
                repo=repo,
                identity=identity,
                dry_run=dry_run,
                confirm=lambda: yes or self._confirm(),
                show=self._show_plan,
                report=reporter_for(self.stdout, verbosity),
            )
        except (BackupError, psycopg.Error) as exc:
            raise CommandError(f"restore to {to!r} failed: {exc}") from exc
        if summary is None:
            self.stdout.write(f"{'Dry run' if dry_run else 'Cancelled'}: nothing was changed.")
            return
        for line in summary:
            self.stdout.write(line)
        self.stdout.write(
            self.style.SUCCESS("Point-in-time restore complete: start PostgreSQL and the shop.")
        )

    def _recover(self, verbosity):
        try:
            lines = recover(reporter_for(self.stdout, verbosity))
        except (BackupError, psycopg.Error) as exc:
            raise CommandError(f"recovery failed: {exc}") from exc
        if not lines:
            self.stdout.write("No interrupted restore: nothing to do.")
            return
        for line in lines[1:]:  # the first was reported as a step already
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("Recovery complete."))

    def _show_plan(self, lines):
        if self.quiet:
            return
        self.stdout.write(self.style.MIGRATE_HEADING("Restore plan:"))
        for line in lines:
            style = self.style.WARNING if line.startswith(("WARNING", "CANNOT")) else str
            self.stdout.write(f"  {style(line)}")

    def _confirm(self) -> bool:
        try:
            answer = input("Replace the live data with this set? Type 'yes' to continue: ")
        except EOFError:
            raise CommandError("no answer on standard input; pass --yes to restore without asking.") from None
        return answer.strip().lower() == "yes"
