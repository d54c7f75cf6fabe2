"""Product images in an S3 bucket (MEDIA_STORAGE=s3): the content-addressed names of
shop/catalog/storage.py, whose `ContentAddressedS3Storage` this is (imported only when used)."""

from urllib.parse import urljoin

from botocore.config import Config
from django.conf import settings
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3Storage


class ContentAddressedS3Storage(S3Storage):
    """The same names in a bucket, under MEDIA_S3_PREFIX; served by nginx at MEDIA_URL.

    The bucket is never addressed by browsers: url() is MEDIA_URL + name, as for local files,
    and nginx proxies /media/ to the bucket with the shop's own headers (README "Scaling out").
    """

    # Names never collide with different content, so no "_abc123" suffixes.
    file_overwrite = True
    default_acl = None
    querystring_auth = False
    # Also on the objects, for anyone reading the bucket directly (a CDN in front of it).
    object_parameters = {"CacheControl": "public, max-age=31536000, immutable"}
    # An unreachable endpoint fails a request (and /readyz) in seconds, not after minutes.
    client_config = Config(
        connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )

    def _save(self, name, content):
        if self.exists(name):  # the same bytes are there already: never overwrite
            return name
        return super()._save(name, content)

    def url(self, name, parameters=None, expire=None, http_method=None):
        return urljoin(settings.MEDIA_URL, filepath_to_uri(name))
