"""The image step of a restore to a time in compose (`make pitr-restore`, ops/pitr_restore.py):
read the image names from the restored cluster while it runs in the pitr-restore one-shot,
before the switch, and bring each image into MEDIA_ROOT from the blob store, or from S3 when the
blob store lacks it, hash-checked (shop/backups/pitr/images.py: the runner's own image step,
reached over the compose network)."""

import os

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from shop.backups.errors import BackupError
from shop.backups.management.commands import IDENTITY_HELP
from shop.backups.pitr.images import bring_images
from shop.backups.progress import reporter_for
from shop.catalog import media


class Command(BaseCommand):
    help = (
        "Bring the product images a restored database names into MEDIA_ROOT from the blob store "
        "(or S3 when it lacks one), each SHA-256 checked (part of `make pitr-restore`)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", required=True, help="the restored cluster's host (the one-shot container)"
        )
        parser.add_argument("--port", type=int, default=5432)
        parser.add_argument("--identity", metavar="FILE", help=IDENTITY_HELP)

    def handle(self, *args, host, port, identity, verbosity, **options):
        try:
            with psycopg.connect(
                host=host,
                port=port,
                dbname=settings.DATABASES["default"]["NAME"],
                user=os.environ.get("POSTGRES_USER") or "shop",
                password=settings.PITR_PG_PASSWORD,
                connect_timeout=10,
            ) as conn:
                names = media.referenced_media_names(conn)
        except psycopg.Error as exc:
            raise CommandError(
                f"cannot read the image names from the restored cluster on {host}: {exc}"
            ) from exc
        try:
            brought = bring_images(names, identity, reporter_for(self.stdout, verbosity))
        except BackupError as exc:
            raise CommandError(f"the images cannot be brought back: {exc}") from exc
        if brought.problems:
            raise CommandError(
                f"{len(brought.problems)} image(s) named by the restored rows cannot be brought back: "
                + "; ".join(brought.problems[:20])
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(names)} image file(s) in place in {settings.MEDIA_ROOT} "
                f"({brought.from_s3} image(s) fetched from S3)"
            )
        )
