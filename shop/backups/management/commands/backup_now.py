import psycopg
from django.core.management.base import BaseCommand, CommandError

from shop.backups.backup import run_backup
from shop.backups.errors import BackupError
from shop.backups.management.commands import skip_collection_at_exit
from shop.backups.progress import reporter_for


class Command(BaseCommand):
    help = "Make a backup set now (database dump + uploads) and copy it to S3. Prints the set ID last."

    def add_arguments(self, parser):
        parser.add_argument("--no-upload", action="store_true", help="keep the set local, skip S3")
        parser.add_argument("--only", choices=["db", "uploads"], help="back up only the database or uploads")

    def handle(self, *args, no_upload, only, **options):
        skip_collection_at_exit()
        try:
            outcome = run_backup(reporter_for(self.stdout), upload=not no_upload, only=only)
        except (BackupError, psycopg.Error) as exc:
            raise CommandError(f"backup failed: {exc}") from exc
        if outcome.offsite is False:
            self.stderr.write(
                self.style.ERROR(
                    f"Set {outcome.set_id} is local only, NOT offsite: {outcome.offsite_error} "
                    f"Retry with the `upload_backup_set` task or run backup_now again later."
                )
            )
        elif outcome.offsite is None:
            self.stdout.write(self.style.WARNING(f"Set {outcome.set_id} was not copied to S3."))
        self.stdout.write(outcome.set_id)
