"""The shared log file handler, opened at the first record it has to write.

concurrent_log_handler locks around rotation, so that every process (gunicorn workers, Celery,
management commands) can write to one file; but importing it imports portalocker, which imports
redis for a lock class we never use: ~0.07 s and ~6 MB of every process, even of one that logs
nothing to the file (a successful backup_now or restore_backup). This handler defers that import
and the opening of the file to the first record; from then on it is ConcurrentRotatingFileHandler.
"""

import logging
import threading


class LazyConcurrentRotatingFileHandler(logging.Handler):
    """Takes ConcurrentRotatingFileHandler's keyword arguments (filename, maxBytes, ...)."""

    def __init__(self, level=logging.NOTSET, **options):
        super().__init__(level)
        self._options = options
        self._handler: logging.Handler | None = None
        self._opening = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            handler = self._file_handler()
        except Exception:  # e.g. LOG_DIR not writable: reported on stderr, as any handler's error
            self.handleError(record)
            return
        handler.handle(record)

    def _file_handler(self) -> logging.Handler:
        with self._opening:
            if self._handler is None:
                from concurrent_log_handler import ConcurrentRotatingFileHandler

                handler = ConcurrentRotatingFileHandler(**self._options)
                handler.setFormatter(self.formatter)
                self._handler = handler
            return self._handler

    def flush(self) -> None:
        if self._handler is not None:
            self._handler.flush()

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
        super().close()
