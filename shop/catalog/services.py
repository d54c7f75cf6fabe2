"""Catalog operations that views, the admin, Celery tasks and tests share."""

import io
import logging

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q

from shop.catalog.cache import bump_catalog_version
from shop.catalog.images import THUMBNAIL_SIZES, make_thumbnail, normalize_image, thumbnail_name
from shop.catalog.models import Product, ProductImage
from shop.catalog.storage import lock_image_files, product_image_storage

logger = logging.getLogger(__name__)


def add_product_image(product: Product, upload, alt_text: str = "", position: int = 0) -> ProductImage:
    """Validate and store an uploaded image for a product; thumbnails follow after commit."""
    normalized = normalize_image(upload)
    image = ProductImage(product=product, alt_text=alt_text, position=position)
    image.image = normalized.as_content_file()
    image.width, image.height = normalized.width, normalized.height
    image.save()
    return image


def archive_after_commit(names) -> None:
    """Once the transaction that stored these files commits, copy them to the backups' blob
    store (shop/backups/image_archive.py; a task, so a failing store never fails this request)."""
    from shop.backups.image_archive import enabled, schedule

    names = [name for name in names if name]
    if names and enabled():
        transaction.on_commit(lambda: schedule(names))


def schedule_thumbnails(image: ProductImage) -> None:
    from shop.catalog.tasks import generate_thumbnails

    image_id = image.pk
    transaction.on_commit(lambda: generate_thumbnails.delay(image_id))


def generate_thumbnails_for(image_id: int) -> ProductImage | None:
    with transaction.atomic():
        image = ProductImage.objects.filter(pk=image_id).first()
        if image is None:
            return None  # deleted before the task ran
        lock_image_files([image.image.name])
        names = {label: thumbnail_name(image.image.name, label) for label in THUMBNAIL_SIZES}
        missing = {label: name for label, name in names.items() if not product_image_storage.exists(name)}
        if missing:
            # Read once: from the media bucket every open is a download (at most MAX_UPLOAD_BYTES).
            with product_image_storage.open(image.image.name) as source:
                original = source.read()
            for label, name in missing.items():
                data = make_thumbnail(io.BytesIO(original), THUMBNAIL_SIZES[label])
                product_image_storage.save(name, ContentFile(data))
        archive_after_commit(missing.values())
        image.thumbnail_small, image.thumbnail_large = names["small"], names["large"]
        ProductImage.objects.filter(pk=image_id).update(
            thumbnail_small=image.thumbnail_small, thumbnail_large=image.thumbnail_large
        )
        bump_catalog_version()  # pages show the thumbnail instead of the original
    return image


def delete_files_after_commit(names: list[str]) -> None:
    """Remove files once the deleting transaction has committed, if no row names them.

    Deleting in post_delete directly would lose the file when the transaction rolls back,
    leaving a row that points at nothing.
    """
    names = [name for name in names if name]
    if names:
        transaction.on_commit(lambda: delete_unreferenced_files(names))


def delete_unreferenced_files(names: list[str]) -> list[str]:
    with transaction.atomic():
        lock_image_files(names)
        still_used = set()
        for row in ProductImage.objects.filter(
            Q(image__in=names) | Q(thumbnail_small__in=names) | Q(thumbnail_large__in=names)
        ).values_list("image", "thumbnail_small", "thumbnail_large"):
            still_used.update(row)
        deleted = [name for name in names if name not in still_used]
        for name in deleted:
            product_image_storage.delete(name)
    if deleted:
        logger.info("deleted unreferenced product image files: %s", ", ".join(deleted))
    return deleted
