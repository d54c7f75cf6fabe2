from botocore.exceptions import BotoCoreError, ClientError

from shop.catalog import services
from shop.celery import app

# OSError: the uploads volume; BotoCoreError/ClientError: the media bucket (MEDIA_STORAGE=s3).
TRANSIENT_STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)


@app.task(autoretry_for=TRANSIENT_STORAGE_ERRORS, retry_backoff=True, max_retries=5)
def generate_thumbnails(image_id: int) -> None:
    services.generate_thumbnails_for(image_id)
