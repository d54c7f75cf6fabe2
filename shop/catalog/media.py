"""The files under MEDIA_ROOT that the catalog owns, as the backups need to know them.

The catalog writes product images under their SHA-256 (`products/ab/<sha256>.<ext>`, see
images.NormalizedImage.storage_name) and their thumbnails under the image's hash
(`products/thumbs/ab/<sha256>-<size>.webp`, see images.thumbnail_name). Both are written
once (storage.ContentAddressedStorage) and never changed under their name: a backup may
trust that a file it has stored under such a name is still the same file.
"""

import re

from psycopg import sql

_IMAGE_NAME = re.compile(r"products/[0-9a-f]{2}/(?P<sha256>[0-9a-f]{64})\.(jpg|png|webp)")
_THUMBNAIL_NAME = re.compile(r"products/thumbs/[0-9a-f]{2}/[0-9a-f]{64}-[0-9]+\.webp")
MEDIA_FIELDS = ("image", "thumbnail_small", "thumbnail_large")  # ProductImage.stored_names


def name_sha256(name: str) -> str | None:
    """The SHA-256 a file's name states as its content (a product image), or None."""
    match = _IMAGE_NAME.fullmatch(name)
    return match["sha256"] if match else None


def is_immutable(name: str) -> bool:
    """Whether the catalog writes this file once and never changes it under this name."""
    return bool(_IMAGE_NAME.fullmatch(name) or _THUMBNAIL_NAME.fullmatch(name))


def referenced_media_names(conn) -> set[str]:
    """Every MEDIA_ROOT file named by a catalog row, read through `conn` (a psycopg connection,
    e.g. the backup's snapshot, so the names match the dump made from it)."""
    from shop.catalog.models import ProductImage  # imported late: the backups import this module early

    columns = [ProductImage._meta.get_field(name).column for name in MEDIA_FIELDS]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(ProductImage._meta.db_table)
    )
    return {name for row in conn.execute(query) for name in row if name}
