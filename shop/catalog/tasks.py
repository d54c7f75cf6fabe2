from botocore.exceptions import BotoCoreError, ClientError
from celery import shared_task

from shop.catalog import services

# OSError: the uploads volume; BotoCoreError/ClientError: the media bucket (MEDIA_STORAGE=s3).
TRANSIENT_STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)


@shared_task(autoretry_for=TRANSIENT_STORAGE_ERRORS, retry_backoff=True, max_retries=5)
def generate_thumbnails(image_id: int) -> None:
    services.generate_thumbnails_for(image_id)
