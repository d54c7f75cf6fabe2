"""The backup commands, and what they share."""

import atexit
import gc

_registered = False

IDENTITY_HELP = (
    "the age identity file (AGE-SECRET-KEY-1...) to decrypt an encrypted set with; "
    "default: the file named by BACKUP_AGE_IDENTITY_FILE"
)


def skip_collection_at_exit() -> None:
    """Spare a command the interpreter's final garbage collection (about 0.2 s here).

    On exit, Python clears the modules and collects the whole heap of Django, Celery and
    boto3 objects, which takes longer than many of our steps. Freezing the heap (gc.freeze)
    in an atexit handler leaves it out of that collection; the operating system frees the
    memory anyway. It changes nothing that matters at exit: our files are closed and
    fsynced by then, and atexit handlers such as logging's flush, and the flush of
    stdout/stderr, still run.
    """
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True
