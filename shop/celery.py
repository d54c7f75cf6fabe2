"""The Celery app: configuration from Django settings (CELERY_*), tasks found per app."""

import os

from celery import Celery
from django.conf import settings

from shop.backups.schedule import cron_schedule

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Settings give cron schedules as checked 5-field strings (building Celery's crontabs there would
# import Celery into every process); beat needs crontab objects.
app.conf.beat_schedule = {
    name: {**entry, "schedule": cron_schedule(entry["schedule"])}
    if isinstance(entry["schedule"], str)
    else entry
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
}
app.autodiscover_tasks()
