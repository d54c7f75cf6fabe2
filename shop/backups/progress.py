"""Progress reporting for long backup steps: a bar on a terminal, plain lines otherwise.

Services take a reporter and call `step(message)` for each stage and `track(label, total)`
around byte-counting loops; the Celery task uses the logging reporter.
"""

import contextlib
import logging
import time

logger = logging.getLogger("shop.backups")


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # unreachable: the loop returns at GB


class LoggingReporter:
    """Steps go to the log (details at DEBUG); byte progress is not worth a log line per chunk."""

    def step(self, message: str) -> None:
        logger.info(message)

    def detail(self, message: str) -> None:
        """A line only worth showing at --verbosity 2 (which blob, which file)."""
        logger.debug(message)

    @contextlib.contextmanager
    def track(self, label: str, total: int | None):
        yield lambda n: None


class PlainReporter(LoggingReporter):
    """For a pipe or a log file: one line when a long step starts and one when it ends.

    Command output is not logged again: the console log handler would print every line twice.
    """

    def __init__(self, write, verbosity: int = 1):
        self.write, self.verbosity = write, verbosity

    def step(self, message: str) -> None:
        self.write(message)

    def detail(self, message: str) -> None:
        if self.verbosity >= 2:
            self.write(f"  {message}")

    @contextlib.contextmanager
    def track(self, label: str, total: int | None):
        started, done = time.monotonic(), 0

        def advance(n: int) -> None:
            nonlocal done
            done += n

        yield advance
        self.write(f"  {label}: {human_bytes(done)} in {time.monotonic() - started:.1f} s")


class RichReporter(LoggingReporter):
    """For a terminal: a progress bar per long step."""

    def __init__(self, console, verbosity: int = 1):
        self.console, self.verbosity = console, verbosity

    def step(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def detail(self, message: str) -> None:
        if self.verbosity >= 2:
            self.console.print(f"  {message}", highlight=False)

    @contextlib.contextmanager
    def track(self, label: str, total: int | None):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = [TextColumn(f"  {label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
        with Progress(*columns, TimeRemainingColumn(), console=self.console, transient=False) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n: bar.advance(task, n)


class SilentReporter(LoggingReporter):
    """--verbosity 0: no progress at all (errors still reach stderr, and the log)."""

    def step(self, message: str) -> None:
        pass


def reporter_for(stdout, verbosity: int = 1) -> LoggingReporter:
    """The reporter a management command should use for its output stream and --verbosity
    (0: nothing, 1: the steps and one line per long one, 2: also the details)."""
    if verbosity <= 0:
        return SilentReporter()
    if stdout.isatty():
        from rich.console import Console

        # Rich draws with control codes; it needs the raw stream, not Django's line wrapper.
        return RichReporter(Console(file=getattr(stdout, "_out", stdout)), verbosity)
    return PlainReporter(lambda line: stdout.write(line), verbosity)
