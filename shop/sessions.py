"""Sessions (and so carts) in Redis, through the cache: Django's cache session engine, except
that an unreachable Redis is an error, not an empty session.

Django's engine reads a session that cannot be loaded as a new, empty one: during a Redis
outage every customer would see an empty cart, and SessionMiddleware would then delete their
session cookie, losing the cart for good even after Redis is back. Here the error propagates and
the customer gets a 503 (shop.outage) with the cookie, and the cart, left alone.
"""

import redis.exceptions
from django.contrib.sessions.backends import cache

REDIS_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class SessionStore(cache.SessionStore):
    def load(self):
        try:
            session_data = self._cache.get(self.cache_key)
        except REDIS_UNREACHABLE:
            raise
        except Exception:
            session_data = None  # as Django: an unreadable entry starts a new session
        if session_data is not None:
            return session_data
        self._session_key = None
        return {}
