"""Swapping staged uploads into MEDIA_ROOT, entry by entry, and undoing it.

MEDIA_ROOT itself is never renamed: in every container deployment it is a mount point (a
volume or a bind mount, which `os.path.ismount` does not even recognise when it comes from the
same filesystem), and a mount point cannot be renamed (EBUSY), nor can anything be created
beside it on a read-only root (EROFS, EACCES). So the staging directory and the copy of the
previous uploads are hidden directories *inside* MEDIA_ROOT (a leading dot: never archived by
a backup, refused by nginx), on the same filesystem, and the swap renames its top-level
entries: the current ones into `.pre-restore-<time>/`, then the staged ones in.

Every step is reported to `on_step` (the restore journal, shop/backups/journal.py), and a swap
killed halfway can be picked up again from what is on disk (`UploadsSwap.resumed`): the previous
directory is new, so whatever is in it was moved out; a staged entry no longer in staging was
moved in. Every entry is moved out before any is moved in, so the two never mix.
"""

import os
from collections.abc import Callable
from pathlib import Path

STAGING_PREFIX = ".restoring-"
PREVIOUS_PREFIX = ".pre-restore-"


def move(source: Path, target: Path) -> None:
    """Move one entry by renaming it (same filesystem), never over an existing one (a rename
    would silently replace a file). A function of its own, so a test can make one move fail."""
    if os.path.lexists(target):
        raise FileExistsError(f"{target} exists already; not moving {source} over it")
    os.rename(source, target)


def no_journal(step: str, **data) -> None:
    """The default `on_step`: nothing recorded."""


def visible_entries(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


class UploadsSwap:
    """The top-level entries of `staging` replace those of `media_root`, which go to `previous`.

    Every move is recorded, so `undo()` puts back exactly what was moved, also when the swap
    failed halfway through.
    """

    def __init__(
        self, media_root: Path, staging: Path, previous: Path, on_step: Callable[..., None] = no_journal
    ):
        self.media_root, self.staging, self.previous = media_root, staging, previous
        self.on_step = on_step
        self.moved_out: list[str] = []  # from media_root into previous
        self.moved_in: list[str] = []  # from staging into media_root
        self.created_previous = False

    @classmethod
    def resumed(
        cls, media_root: Path, staging: Path, previous: Path, incoming: list[str], on_step=no_journal
    ):
        """The swap as a killed process left it, read from disk; `incoming` is the staged entries
        it recorded when it started (moved-in ones are no longer in staging)."""
        swap = cls(media_root, staging, previous, on_step)
        swap.created_previous = previous.is_dir()
        swap.moved_out = visible_entries(previous) if swap.created_previous else []
        swap.moved_in = [
            name
            for name in incoming
            if not os.path.lexists(staging / name) and os.path.lexists(media_root / name)
        ]
        return swap

    def run(self) -> None:
        """Swap, or finish a swap a killed process left halfway (see `resumed`)."""
        if not self.created_previous:
            self.on_step("uploads-swap-started", incoming=visible_entries(self.staging))
            self.previous.mkdir(mode=0o755)
            self.created_previous = True
            self.on_step("uploads-previous-created")
        if not self.moved_in:  # every entry goes out before any comes in
            for name in visible_entries(self.media_root):
                move(self.media_root / name, self.previous / name)
                self.moved_out.append(name)
                self.on_step("uploads-moved-out", entry=name)
        for name in visible_entries(self.staging):
            move(self.staging / name, self.media_root / name)
            self.moved_in.append(name)
            self.on_step("uploads-moved-in", entry=name)
        self.on_step("uploads-swapped")

    def undo(self) -> None:
        """Move the restored entries back into staging and the previous ones back into place.
        Goes on after a failed move, then raises the first error (what is left is in `state`)."""
        errors = []
        for name in list(reversed(self.moved_in)):
            try:
                move(self.media_root / name, self.staging / name)
                self.moved_in.remove(name)
            except OSError as exc:
                errors.append(exc)
        if not self.moved_in:  # only then: a previous entry must never land on a restored one
            for name in list(reversed(self.moved_out)):
                try:
                    move(self.previous / name, self.media_root / name)
                    self.moved_out.remove(name)
                except OSError as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]
        if self.created_previous:
            self.previous.rmdir()
            self.created_previous = False

    def summary(self, set_id: str, files: str) -> list[str]:
        """After a complete swap: what was restored, and the commands that roll it back."""
        media_root, previous, restored = self.media_root, self.previous, f".restored-{set_id}"
        return [
            f"Restored {files} into {media_root}.",
            f"The previous uploads are kept in {previous} (hidden: never backed up, not served). "
            "To roll back (MEDIA_ROOT itself stays in place, it may be a mount point):",
            f"  cd {media_root} && mkdir {restored} && mv -- * {restored}/ "
            f"&& mv -- {previous.name}/* . && rmdir {previous.name}",
            f"When satisfied, delete the previous uploads: rm -r {previous}",
        ]

    def state(self) -> tuple[str, list[str]]:
        """(where the uploads are now, the shell commands that put the previous ones back),
        for a message after an undo that failed halfway."""
        if not (self.moved_in or self.moved_out):
            return f"the uploads in {self.media_root} are as before the restore", []
        restored = " ".join(_quoted(self.moved_in))
        where = (
            f"in {self.media_root}, {len(self.moved_in)} restored entries ({_shortened(self.moved_in)}) "
            f"are in place and {len(self.moved_out)} previous entries are still in {self.previous.name}/"
        )
        commands = [f"cd {self.media_root}"]
        if self.moved_in:
            commands.append(f"mkdir -p {self.staging.name} && mv -- {restored} {self.staging.name}/")
        if self.moved_out:
            commands.append(f"mv -- {self.previous.name}/* . && rmdir {self.previous.name}")
        return where, commands


def _quoted(names: list[str]) -> list[str]:
    return ["'" + name.replace("'", "'\\''") + "'" for name in names]


def _shortened(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
