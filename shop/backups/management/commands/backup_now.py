import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from shop.backups.backup import run_backup
from shop.backups.errors import BackupError
from shop.backups.management.commands import skip_collection_at_exit
from shop.backups.progress import reporter_for


class Command(BaseCommand):
    # The system checks load every URLconf, view and admin (~0.3 s, ~10 MB) and check
    # nothing a backup relies on; `manage.py check` and the web processes run them.
    requires_system_checks = []

    help = (
        "Make a backup set now (database dump + uploads) and copy it to S3. Prints the set ID last "
        "(with --verbosity 0, nothing else)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-upload", action="store_true", help="keep the set local, skip S3")
        parser.add_argument("--only", choices=["db", "uploads"], help="back up only the database or uploads")

    def handle(self, *args, no_upload, only, verbosity, **options):
        skip_collection_at_exit()
        try:
            outcome = run_backup(reporter_for(self.stdout, verbosity), upload=not no_upload, only=only)
        except (BackupError, psycopg.Error) as exc:
            raise CommandError(f"backup failed: {exc}") from exc
        if outcome.offsite is False:
            # The set is good and kept; but an offsite copy was wanted and is missing: cron and
            # monitoring must see a failure, so the ID goes out first, then the error.
            self.stdout.write(outcome.set_id)
            raise CommandError(
                f"set {outcome.set_id} was written and kept in {settings.BACKUP_PATH}, but it is NOT "
                f"offsite: {outcome.offsite_error}. Fix that, then run backup_now again (the scheduled "
                "backup retries the upload of its set by itself)."
            )
        if verbosity == 0:
            pass  # only the set ID, for scripts
        elif no_upload:
            self.stdout.write(f"Set {outcome.set_id} is local only (--no-upload).")
        elif not outcome.offsite_configured:
            self.stdout.write(
                self.style.WARNING(
                    f"Offsite: not configured (BACKUP_S3_BUCKET is empty): set {outcome.set_id} is kept "
                    f"only in {settings.BACKUP_PATH}."
                )
            )
        self.stdout.write(outcome.set_id)
