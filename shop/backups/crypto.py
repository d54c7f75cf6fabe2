"""Encryption at rest with age (pyrage binds the Rust implementation).

The shop's hosts hold only the recipients' public keys (BACKUP_AGE_RECIPIENTS): they can
encrypt a set, never read one back. The private identity is needed only to restore or to
deep-verify, and is given by `--identity FILE` or BACKUP_AGE_IDENTITY_FILE, so a stolen
bucket does not give away the database, the uploads archive, the manifest or the image blobs.
With BACKUP_ENCRYPT_LOCAL a stolen backup volume does not either: each set is encrypted on disk
(seal_set_dir), and every blob written to the local store (BACKUP_PATH/blobs) from then on is
the same age object that goes to S3 (shop/backups/blobs.py). Blobs stored before it was turned
on stay plaintext, and valid: a blob's first line tells the two apart.

Everything streams through pyrage's encrypt_io/decrypt_io, which read and write 8 KiB at a
time: memory stays flat whatever the size of the file.

An encrypted set carries a small plaintext index (INDEX_NAME) beside its encrypted files, so
it can be listed, checked for presence and pruned without the identity: the set ID, times,
contents, the plaintext and stored size of each file, the SHA-256 of each stored (encrypted)
file, the size and SHA-256 of each encrypted blob the set names ("stored_blobs"), and the
recipients' public keys. No secret and no plaintext checksum is in it (a blob's name is the
SHA-256 of its plaintext, as it is on S3). The
manifest's checksums stay those of the plaintext and are checked after decryption, as for
an unencrypted set; age's authenticated encryption refuses any changed byte on the way.
"""

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pyrage
from django.conf import settings
from pyrage import x25519

from shop.backups.errors import BackupError, CorruptSet
from shop.backups.files import create_private_file
from shop.backups.manifest import MANIFEST_NAME

AGE_HEADER = b"age-encryption.org/v1\n"
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
SCHEME = "age"
IDENTITY_ENV = "BACKUP_AGE_IDENTITY_FILE"


class IdentityRefused(BackupError):
    """No identity, or one that is not a recipient of the set."""


# --- keys ----------------------------------------------------------------------------------


def parse_recipients(text: str) -> list[x25519.Recipient]:
    """age public keys (age1...) separated by commas, spaces or newlines; [] for an empty text."""
    recipients = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        if word.upper().startswith("AGE-SECRET-KEY-"):
            raise BackupError(
                "BACKUP_AGE_RECIPIENTS holds an age identity (AGE-SECRET-KEY-1...), a private key: "
                "give only its public key (age1..., `age-keygen -y`), and keep the identity off this host."
            )
        try:
            recipients.append(x25519.Recipient.from_str(word))
        except pyrage.RecipientError as exc:
            shown = word if word.startswith("age1") else f"{word[:12]}..."  # never echo a pasted secret
            raise BackupError(
                f"BACKUP_AGE_RECIPIENTS: {shown!r} is not an age public key ({exc}). Give the public "
                "keys (age1..., from `age-keygen -y identity.txt`) separated by commas or spaces."
            ) from None
    return recipients


def configured_recipients() -> list[x25519.Recipient]:
    """The recipients new sets are encrypted to; [] when encryption is off."""
    recipients = parse_recipients(settings.BACKUP_AGE_RECIPIENTS)
    if settings.BACKUP_ENCRYPT_LOCAL and not recipients:
        raise BackupError(
            "BACKUP_ENCRYPT_LOCAL is on but BACKUP_AGE_RECIPIENTS is empty: give the age public "
            "key(s) to encrypt to, or turn BACKUP_ENCRYPT_LOCAL off."
        )
    return recipients


def local_recipients() -> list[x25519.Recipient]:
    """The recipients the local store's new blobs are encrypted to: [] unless BACKUP_ENCRYPT_LOCAL."""
    return configured_recipients() if settings.BACKUP_ENCRYPT_LOCAL else []


def identity_file(given: str | None) -> str | None:
    """The identity file: `--identity FILE` first, else BACKUP_AGE_IDENTITY_FILE, else None."""
    return given or settings.BACKUP_AGE_IDENTITY_FILE or None


def load_identities(path: str | os.PathLike) -> list[x25519.Identity]:
    """The AGE-SECRET-KEY-1... lines of an age identity file (as age-keygen writes it)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise IdentityRefused(f"cannot read the age identity file {path}: {exc.strerror or exc}.") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    identities = []
    for number, key in enumerate(keys, start=1):
        try:
            identities.append(x25519.Identity.from_str(key))
        except pyrage.IdentityError as exc:
            raise IdentityRefused(
                f"{path}: key {number} is not an age identity ({exc}); expected AGE-SECRET-KEY-1... lines."
            ) from None
    if not identities:
        raise IdentityRefused(f"{path} holds no age identity (AGE-SECRET-KEY-1... line).")
    return identities


def identities_to_read(keys, what: str) -> list[x25519.Identity]:
    """`keys` as identities: a list of them as it is, else the identity file it names (or
    BACKUP_AGE_IDENTITY_FILE); IdentityRefused, naming `what`, when there is none."""
    if isinstance(keys, list):
        return keys
    path = identity_file(keys)
    if path is None:
        raise IdentityRefused(
            f"{what} is encrypted (with age, by BACKUP_AGE_RECIPIENTS) and no identity was given: pass "
            f"--identity FILE or set {IDENTITY_ENV}. Nothing was changed."
        )
    return load_identities(path)


def public_keys(recipients: list[x25519.Recipient]) -> list[str]:
    return [str(recipient) for recipient in recipients]


# --- streams -------------------------------------------------------------------------------


class HashingReader:
    """A read-only wrapper that hashes and counts what is read through it (and reports progress)."""

    def __init__(self, raw, advance=None):
        self.raw, self.advance = raw, advance
        self.sha256, self.size = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        if self.advance:
            self.advance(len(data))
        return data


def encrypt_stream(source, target, recipients: list[x25519.Recipient]) -> None:
    """Encrypt everything `source.read()` gives into `target.write()`, 8 KiB at a time.

    pyrage turns an exception of the source or target (a full disk, S3 refusing a part) into
    an EncryptError holding only its text; the original is raised instead, so that callers
    handle it as they would without encryption (an OffsiteError, a full backup volume)."""
    errors: list[BaseException] = []
    try:
        pyrage.encrypt_io(_Recording(source, errors), _Recording(target, errors), recipients)
    except pyrage.EncryptError as exc:
        if errors:
            raise errors[0] from None
        raise BackupError(f"age encryption failed: {exc}") from exc


class _Recording:
    """A file-like proxy that remembers the first exception of read() or write()."""

    def __init__(self, raw, errors: list[BaseException]):
        self.raw, self.errors = raw, errors

    def read(self, n: int = -1) -> bytes:
        try:
            return self.raw.read(n)
        except BaseException as exc:
            self.errors.append(exc)
            raise

    def write(self, data) -> int:
        try:
            return self.raw.write(data)
        except BaseException as exc:
            self.errors.append(exc)
            raise

    def flush(self) -> None:
        self.raw.flush()


def decrypt_stream(source, target, identities: list[x25519.Identity], what: str) -> None:
    """Decrypt `source` into `target`; IdentityRefused if no identity matches, CorruptSet if the
    ciphertext was changed or cut short (age authenticates every 64 KiB chunk)."""
    try:
        pyrage.decrypt_io(source, target, identities)
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise IdentityRefused(f"{what}: the identity given is not one of its recipients") from None
        raise CorruptSet(f"{what} cannot be decrypted: {exc}") from None
    except OSError as exc:
        if exc.errno is not None:  # a real I/O error (a full disk): not the set's fault
            raise
        # pyrage reports a failed authentication tag, or a cut-short file, as an OSError without errno
        raise CorruptSet(f"{what} is damaged: its encrypted data does not authenticate ({exc})") from None


def encrypt_bytes(data: bytes, recipients: list[x25519.Recipient]) -> bytes:
    """For small files only (a manifest, an index)."""
    return pyrage.encrypt(data, recipients)


def is_encrypted(data: bytes) -> bool:
    return data.startswith(AGE_HEADER)


# --- sets ----------------------------------------------------------------------------------


def make_index(manifest: dict, stored: dict[str, dict], recipients: list[str], stored_blobs=None) -> dict:
    """The plaintext index of an encrypted set: what listing, presence checks and retention need,
    and what a check without the identity compares the stored bytes with (`stored_blobs`:
    {sha256: {"stored_size", "stored_sha256"}} of the encrypted blobs the set names)."""
    return {
        "format": INDEX_FORMAT,
        "id": manifest["id"],
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
        "contents": manifest.get("contents", []),
        "encryption": {"scheme": SCHEME, "recipients": recipients},
        "files": {
            name: {"size": entry["size"], **stored[name]} for name, entry in sorted(manifest["files"].items())
        },
        # The blob store's objects this set names (shop/backups/blobs.py), for retention's sweep.
        "blobs": {
            upload["sha256"]: upload["size"]
            for upload in (manifest.get("uploads") or {}).get("files") or []
            if upload.get("stored") == "blob"
        },
        # Those kept in the backup bucket only (a media bucket's objects, copied server-side).
        "bucket_blobs": {
            upload["sha256"]: upload["size"]
            for upload in (manifest.get("uploads") or {}).get("files") or []
            if upload.get("stored") == "bucket"
        },
        "stored_blobs": dict(sorted((stored_blobs or {}).items())),
    }


def is_index(summary: dict) -> bool:
    return summary.get("encryption", {}).get("scheme") == SCHEME


def read_index(set_dir: Path) -> dict | None:
    """The plaintext index of a set encrypted on disk, or None for an unencrypted set."""
    path = set_dir / INDEX_NAME
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CorruptSet(f"{path} is not valid JSON ({exc}). Use another set.") from None
    if index.get("format") != INDEX_FORMAT or not is_index(index) or not isinstance(index.get("files"), dict):
        raise CorruptSet(f"{path} is not a format-{INDEX_FORMAT} index of an encrypted set.")
    return index


def identities_for(index: dict, given: str | None) -> list[x25519.Identity]:
    """The identities to open an encrypted set with; IdentityRefused, naming the set's recipients,
    when none is given. Whether they match is known only on decrypting the manifest."""
    path = identity_file(given)
    if path is None:
        raise IdentityRefused(
            f"set {index['id']} is encrypted ({refusal_hint(index)}) and no identity was given: pass "
            f"--identity FILE or set {IDENTITY_ENV}. Nothing was changed."
        )
    return load_identities(path)


def refusal_hint(index: dict) -> str:
    recipients = index["encryption"].get("recipients") or ["?"]
    return f"with age, to recipient(s) {', '.join(recipients)}"


def decrypt_manifest(data: bytes, index: dict, identities: list[x25519.Identity]) -> bytes:
    """The plaintext manifest; the first thing decrypted, so a wrong identity stops everything."""
    try:
        return pyrage.decrypt(data, identities)
    except pyrage.DecryptError as exc:
        if "no matching keys" not in str(exc).lower():
            raise CorruptSet(f"the manifest of set {index['id']} cannot be decrypted: {exc}") from None
        mine = ", ".join(str(identity.to_public()) for identity in identities)
        raise IdentityRefused(
            f"set {index['id']} is encrypted {refusal_hint(index)}; the identity given is for {mine}, "
            "not one of them. Use the identity of one of those recipients (an old set needs the "
            "identity that was current when it was made). Nothing was changed."
        ) from None


def seal_set_dir(
    directory: Path, manifest: dict, recipients: list[x25519.Recipient], stored_blobs: dict | None = None
) -> dict:
    """Encrypt a freshly written set in place (BACKUP_ENCRYPT_LOCAL), file by file, and write its
    index (with `stored_blobs`, see make_index); the plaintext files are replaced. Returns the index."""
    stored = {}
    for name in sorted(manifest["files"]):
        stored[name] = _encrypt_file_in_place(directory / name, recipients)
    index = make_index(manifest, stored, public_keys(recipients), stored_blobs)
    manifest_path = directory / MANIFEST_NAME
    ciphertext = encrypt_bytes(manifest_path.read_bytes(), recipients)
    _write_synced(manifest_path.with_name(f".{MANIFEST_NAME}.age"), ciphertext)
    os.replace(manifest_path.with_name(f".{MANIFEST_NAME}.age"), manifest_path)
    _write_synced(directory / INDEX_NAME, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
    return index


def _encrypt_file_in_place(path: Path, recipients: list[x25519.Recipient]) -> dict:
    temporary = path.with_name(f".{path.name}.age")
    with open(path, "rb") as source, create_private_file(temporary) as raw:
        target = HashingWriter(raw)
        encrypt_stream(source, target, recipients)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(temporary, path)
    return target.stored()


class HashingWriter:
    """A write-only wrapper that hashes and counts what is written through it (`raw` None: nowhere)."""

    def __init__(self, raw):
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data) if self.raw else len(data)

    def flush(self) -> None:
        if self.raw:
            self.raw.flush()

    def stored(self) -> dict:
        """What was written, as an index records it."""
        return {"stored_size": self.size, "stored_sha256": self.sha256.hexdigest()}


class TeeReader:
    """A read-only wrapper that also writes what is read through it to `copy`."""

    def __init__(self, raw, copy):
        self.raw, self.copy = raw, copy

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.copy.write(data)
        return data


def _write_synced(path: Path, data: bytes) -> None:
    with create_private_file(path) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def open_sealed_set(sealed: Path, index: dict, destination: Path, identities, report) -> dict:
    """Decrypt a set encrypted on disk into `destination` (manifest first); returns the manifest."""
    manifest_bytes = decrypt_manifest((sealed / MANIFEST_NAME).read_bytes(), index, identities)
    _write_synced(destination / MANIFEST_NAME, manifest_bytes)
    for name, entry in sorted(index["files"].items()):
        with (
            open(sealed / name, "rb") as raw,
            create_private_file(destination / name) as out,
            report.track(f"decrypting {name}", entry["stored_size"]) as advance,
        ):
            decrypt_stream(HashingReader(raw, advance), out, identities, f"{name} of set {index['id']}")
    return json.loads(manifest_bytes)


# --- keys for admins and benchmarks --------------------------------------------------------


def new_identity_file(path: Path) -> str:
    """Write a new age identity to `path` (mode 0600, refusing to overwrite, like age-keygen -o)
    and return its public key, the recipient to put in BACKUP_AGE_RECIPIENTS."""
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"# created: {datetime.now(UTC).isoformat(timespec='seconds')}\n# public key: {public}\n")
        out.write(f"{identity}\n")
    return public


if __name__ == "__main__":  # python -m shop.backups.crypto keygen FILE: for machines without age-keygen
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "keygen":
        sys.exit("usage: python -m shop.backups.crypto keygen IDENTITY_FILE   (prints the public key)")
    try:
        print(new_identity_file(Path(sys.argv[2])))
    except FileExistsError:
        sys.exit(f"{sys.argv[2]} exists already: not overwriting an identity (old sets may need it).")
