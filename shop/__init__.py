"""The shop project. Importing it loads the Celery app so `shared_task` binds to it."""

from shop.celery import app as celery_app

__version__ = "0.1.0"
__all__ = ["__version__", "celery_app"]
