from celery import shared_task

from shop.catalog import services


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def generate_thumbnails(image_id: int) -> None:
    services.generate_thumbnails_for(image_id)
