"""Keep the image files (MEDIA_ROOT or the media bucket) in step with ProductImage rows, only ever
after a commit; and invalidate the cached catalog fragments (shop/catalog/cache.py) on every saved
or deleted catalog row."""

from django.db.models.signals import post_delete, post_init, post_save, pre_save
from django.dispatch import receiver

from shop.catalog.cache import bump_catalog_version
from shop.catalog.models import Category, Product, ProductImage
from shop.catalog.services import archive_after_commit, delete_files_after_commit, schedule_thumbnails


@receiver(post_init, sender=ProductImage)
def remember_stored_names(sender, instance, **kwargs):
    instance._stored_names_at_load = instance.stored_names() if instance.pk else []


def _image_replaced(instance) -> bool:
    previous = instance._stored_names_at_load
    return bool(previous) and previous[0] != instance.image.name


@receiver(pre_save, sender=ProductImage)
def forget_stale_thumbnails(sender, instance, **kwargs):
    if _image_replaced(instance):
        instance.thumbnail_small = instance.thumbnail_large = ""


@receiver(post_save, sender=ProductImage)
def after_image_saved(sender, instance, created, **kwargs):
    if created or _image_replaced(instance):
        schedule_thumbnails(instance)
        archive_after_commit([instance.image.name])
        current = instance.stored_names()
        delete_files_after_commit([n for n in instance._stored_names_at_load if n not in current])
    instance._stored_names_at_load = instance.stored_names()


@receiver(post_delete, sender=ProductImage)
def after_image_deleted(sender, instance, **kwargs):
    delete_files_after_commit(instance.stored_names())


def catalog_changed(sender, **kwargs):
    bump_catalog_version()


for model in (Category, Product, ProductImage):
    post_save.connect(catalog_changed, sender=model, dispatch_uid=f"catalog-version-save-{model.__name__}")
    post_delete.connect(
        catalog_changed, sender=model, dispatch_uid=f"catalog-version-delete-{model.__name__}"
    )
