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
from urllib.parse import urljoin

from botocore.config import Config
from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3Storage


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


class ContentAddressedS3Storage(S3Storage):
    """The same names in a bucket, under MEDIA_S3_PREFIX; served by nginx at MEDIA_URL.

    The bucket is never addressed by browsers: url() is MEDIA_URL + name, as for local files,
    and nginx proxies /media/ to the bucket with the shop's own headers (README "Scaling out").
    """

    # Names never collide with different content, so no "_abc123" suffixes.
    file_overwrite = True
    default_acl = None
    querystring_auth = False
    # Also on the objects, for anyone reading the bucket directly (a CDN in front of it).
    object_parameters = {"CacheControl": "public, max-age=31536000, immutable"}
    # An unreachable endpoint fails a request (and /readyz) in seconds, not after minutes.
    client_config = Config(
        connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )

    def _save(self, name, content):
        if self.exists(name):  # the same bytes are there already: never overwrite
            return name
        return super()._save(name, content)

    def url(self, name, parameters=None, expire=None, http_method=None):
        return urljoin(settings.MEDIA_URL, filepath_to_uri(name))


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
