import psycopg
from django.core.management.base import BaseCommand, CommandError

from shop.backups.errors import BackupError
from shop.backups.inventory import latest_set_id
from shop.backups.management.commands import IDENTITY_HELP, skip_collection_at_exit
from shop.backups.progress import reporter_for
from shop.backups.verify import verify_set


class Command(BaseCommand):
    # The system checks load every URLconf, view and admin (~0.3 s, ~10 MB) and check
    # nothing a backup relies on; `manage.py check` and the web processes run them.
    requires_system_checks = []

    help = "Check a backup set's checksums; with --deep, test-restore it into scratch places."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("set_id", nargs="?", help="the set ID, e.g. 20261128T020000Z")
        which.add_argument("--latest", action="store_true", help="the newest set")
        parser.add_argument("--source", choices=["local", "s3"], help="default: local, else S3")
        parser.add_argument("--deep", action="store_true", help="also restore into a scratch database/dir")
        parser.add_argument("--identity", metavar="FILE", help=IDENTITY_HELP)

    def handle(self, *args, set_id, latest, source, deep, identity, verbosity, **options):
        skip_collection_at_exit()
        try:
            set_id = set_id or latest_set_id(source)
            checked = verify_set(set_id, source, deep, reporter_for(self.stdout, verbosity), identity)
        except (BackupError, psycopg.Error) as exc:
            raise CommandError(f"verification failed: {exc}") from exc
        if verbosity == 0:
            return  # the exit status says it
        for line in checked:
            self.stdout.write(f"  {line}")
        self.stdout.write(self.style.SUCCESS(f"Set {set_id} is good."))
