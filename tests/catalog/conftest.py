"""Image files in both media storages: the uploads directory (MEDIA_STORAGE=local) and an S3
bucket on the moto server (MEDIA_STORAGE=s3). Tests look at the files directly (the directory,
or the bucket through its own S3 client), not through the storage under test."""

from pathlib import Path

import pytest

from tests.conftest import MediaBucket


class LocalFiles:
    mode = "local"

    def __init__(self, root: Path):
        self.root = root

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def put(self, name: str, data: bytes) -> None:
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_bytes(data)

    def names(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


class BucketFiles:
    mode = "s3"

    def __init__(self, bucket: MediaBucket):
        self.bucket = bucket

    def exists(self, name: str) -> bool:
        return name in self.bucket.names()

    def read(self, name: str) -> bytes:
        return self.bucket.read(name)

    def put(self, name: str, data: bytes) -> None:
        self.bucket.put(name, data)

    def names(self) -> list[str]:
        return self.bucket.names()


@pytest.fixture(params=["local", "s3"])
def stored_files(request, media_root):
    """The test runs once per MEDIA_STORAGE; what the storage holds, seen from outside it."""
    if request.param == "s3":
        return BucketFiles(request.getfixturevalue("media_bucket"))
    return LocalFiles(media_root)
