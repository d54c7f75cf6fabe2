"""Django's Redis cache backend, with one redis-py client per connection pool instead of a new
one for every command.

Django's client builds a `redis.Redis` for each get or set; its constructor fills a table of
some 170 response callbacks, which cost more CPU than the GET itself (profiled in
ops/bench/storefront.py). A redis-py client is safe to share between threads; the connection
pool and its reconnects on a Redis restart are unchanged.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class SharedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedClientRedisCacheClient
