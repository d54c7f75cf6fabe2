"""What can go wrong with backups, as exceptions the commands turn into clear messages."""


class BackupError(Exception):
    """A backup, verification or restore that cannot go on; the message says what to do."""


class BackupBusy(BackupError):
    """Another backup or restore holds the lock."""


class CorruptSet(BackupError):
    """A set whose files do not match its manifest (or that has no manifest)."""


class UnsafeArchive(CorruptSet):
    """An uploads archive with a member that could write outside the staging directory."""


class OffsiteError(BackupError):
    """S3 could not be reached or refused the upload; the local set is kept."""
