"""Content-addressed storage for product images, on the uploads volume or in an S3 bucket.

A file's name is the hash of its bytes, so a name that exists already holds exactly those
bytes: saving it again writes nothing, and the file is shared by every row that names it.
Because files are shared, deciding that a file is unused and deleting it must not interleave
with a new row starting to use it: both happen under `lock_image_files`.
A file appears under its name only once it is complete (locally: written to a temporary file
in the same directory, then hard-linked into place; in S3 a PUT is all or nothing), so a crash
never leaves half an image.

settings.MEDIA_STORAGE picks the class (STORAGES["default"]); everything that touches image
files goes through `product_image_storage`, Django's default storage.
"""

import contextlib
import os
import tempfile

from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection


class ContentAddressedStorage(FileSystemStorage):
    def get_available_name(self, name, max_length=None):
        return name

    def _save(self, name, content):
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        os.makedirs(directory, mode=self.directory_permissions_mode or 0o755, exist_ok=True)
        if os.path.exists(full_path):
            return name
        fd, temp_path = tempfile.mkstemp(dir=directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as temp_file:
                for chunk in content.chunks():
                    temp_file.write(chunk)
                temp_file.flush()
                os.fsync(temp_file.fileno())
            os.chmod(temp_path, self.file_permissions_mode or 0o644)
            # FileExistsError: written meanwhile by another process; same name, same bytes.
            with contextlib.suppress(FileExistsError):
                os.link(temp_path, full_path)
        finally:
            os.unlink(temp_path)
        return name


def __getattr__(name):
    # The S3 class is imported on first use (settings.STORAGES names it here): boto3 and
    # django-storages cost every process ~0.2-0.3 s and ~20 MB that keeps images on disk.
    if name == "ContentAddressedS3Storage":
        from shop.catalog.s3_storage import ContentAddressedS3Storage

        return ContentAddressedS3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Follows settings.STORAGES (and MEDIA_ROOT), also when tests override them.
product_image_storage = default_storage


def content_key(name: str) -> str:
    """The hash an image file and its thumbnails share ("products/ab/abcd...-300.webp" -> "abcd...")."""
    return name.rsplit("/", 1)[-1].split(".", 1)[0].split("-", 1)[0]


def lock_image_files(names) -> None:
    """Hold a transaction-level lock on these files' content until the transaction ends.

    Taken in sorted order, so two transactions locking several files cannot deadlock.
    """
    assert connection.in_atomic_block, "lock_image_files() only makes sense inside a transaction"
    with connection.cursor() as cursor:
        for key in sorted({content_key(name) for name in names if name}):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"product-image:{key}"])
