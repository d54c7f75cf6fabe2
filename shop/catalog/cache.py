"""Rendered catalog fragments in Redis, under a catalog version that every catalog change bumps.

A fragment's key holds the catalog version: after any committed change of a product, image,
price, stock or category, the version is new, so the next request misses every old fragment
and renders from the database (old fragments expire after CATALOG_FRAGMENT_TIMEOUT). Nothing
is ever deleted by pattern, and no fragment is ever served after the commit that changed it.

What bumps it: the post_save/post_delete signals of Category, Product and ProductImage (the
admin, seed_demo, list_editable, deletions) in shop/catalog/signals.py, and the two places that
change rows with UPDATE, which sends no signal: shop/catalog/stock.py (adjust_stock: checkout,
cancellation, the admin's stock adjustment) and the thumbnail task (services.py).

A fragment under a given key never changes, so each process also keeps the fragments it used
last in memory (LOCAL_FRAGMENT_BYTES): a page then costs one Redis GET, the version's.

Fragments hold catalog content only: never a CSRF token, the cart, the user or messages (the
`catalogcache` template tag refuses to compile a fragment that names them).
"""

import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

VERSION_KEY = "catalog:version"
REQUEST_ATTRIBUTE = "_catalog_version"
# What a cached fragment or page holds instead of the CSRF token; no template text can contain a
# NUL. Filled with the visitor's own token on every response.
CSRF_HOLE = "\x00csrf-token\x00"


def catalog_version() -> str:
    """The current catalog version (a new one when Redis has none yet)."""
    version = cache.get(VERSION_KEY)
    if version is None:
        cache.add(VERSION_KEY, uuid.uuid4().hex, timeout=None)
        version = cache.get(VERSION_KEY)
    return version


def request_catalog_version(request) -> str:
    """The version for one request, read once: every fragment of a page from one catalog state.

    Read before any catalog query of the request: a commit after it bumps the version, so a
    fragment rendered from older rows is stored under a version no later request uses.
    """
    if request is None:
        return catalog_version()
    if not hasattr(request, REQUEST_ATTRIBUTE):
        setattr(request, REQUEST_ATTRIBUTE, catalog_version())
    return getattr(request, REQUEST_ATTRIBUTE)


def _new_version() -> None:
    cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)


def bump_catalog_version() -> None:
    """Invalidate every catalog fragment: now, and again once the current transaction commits.

    After the commit, because a request between our change and the commit reads the old rows
    and may store them under the version of that moment. Now as well, because this connection
    itself (the rest of the transaction, a test inside one) already sees the change.
    """
    try:
        _new_version()
    except Exception:
        # The change itself must not fail because Redis is away; the bump after commit retries.
        logger.exception("could not bump the catalog version before commit")
    connection = transaction.get_connection()
    if not any(func is _new_version for _, func, _ in connection.run_on_commit):
        transaction.on_commit(_new_version, robust=True)  # once per transaction is enough


def fragment_key(version: str, name: str, parts: tuple) -> str:
    # Hashed: the parts hold search words (spaces, any length) that Redis keys would carry as is.
    digest = hashlib.md5("\x1f".join(str(part) for part in parts).encode(), usedforsecurity=False)
    return f"catalog:{version}:{name}:{digest.hexdigest()}"


def fragment_timeout() -> int:
    return settings.CATALOG_FRAGMENT_TIMEOUT


class LocalFragments:
    """The fragments this process used last, up to a number of characters (least recently used
    go first). Safe to share between threads (gthread workers)."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self.chars = 0
        self.entries: OrderedDict[str, str] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self.lock:
            html = self.entries.get(key)
            if html is not None:
                self.entries.move_to_end(key)
            return html

    def put(self, key: str, html: str) -> None:
        if len(html) > self.max_chars:
            return
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = html
            self.chars += len(html)
            while self.chars > self.max_chars:
                _, dropped = self.entries.popitem(last=False)
                self.chars -= len(dropped)


local_fragments = LocalFragments(max_chars=8_000_000)


def stored_fragment(key: str, *, process_only: bool = False) -> str | None:
    """The fragment under `key` from this process's memory, else Redis (unless `process_only`)."""
    html = local_fragments.get(key)
    if html is None and not process_only:
        html = cache.get(key)
        if html is not None:
            local_fragments.put(key, html)
    return html


def store_fragment(key: str, html: str, *, process_only: bool = False) -> None:
    if not process_only:
        cache.set(key, html, fragment_timeout())
    local_fragments.put(key, html)


def cached_fragment(key: str, render: Callable[[], str], *, process_only: bool = False) -> str:
    """The fragment under `key`: from this process's memory, else Redis (unless `process_only`),
    else `render()` (then stored in both)."""
    html = stored_fragment(key, process_only=process_only)
    if html is None:
        html = render()
        store_fragment(key, html, process_only=process_only)
    return html
