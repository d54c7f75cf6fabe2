"""The shop project.

The Celery app (shop/celery.py) is not imported here: that would cost every process, the backup
and restore commands too, ~0.15 s and ~20 MB. The task modules define their tasks on it
(`@app.task`), so whatever sends a task has loaded it; `celery -A shop` finds it by itself.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "celery_app"]


def __getattr__(name: str):
    if name == "celery_app":  # `from shop import celery_app`, loaded on first use
        from shop.celery import app

        return app
    raise AttributeError(f"module 'shop' has no attribute {name!r}")
