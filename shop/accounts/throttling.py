"""The client address that sign-in throttling (django-axes) counts attempts by."""

import ipaddress

from django.conf import settings


def client_ip(request) -> str:
    """The client's address as the first proxy we trust saw it.

    nginx appends the address it sees to X-Forwarded-For: that right-most entry is the client
    (TRUSTED_PROXY_COUNT entries further left when proxies in front of nginx append theirs).
    Entries left of it are whatever the client sent, so they are never used: a made-up
    address cannot buy a fresh set of attempts. Without the header (runserver, tests), or with
    an entry that is not an address, REMOTE_ADDR.
    """
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if forwarded:
        candidate = forwarded[max(len(forwarded) - 1 - settings.TRUSTED_PROXY_COUNT, 0)]
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR", "")
