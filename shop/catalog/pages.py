"""Whole catalog pages cached for visitors without a session: one entry per page, under the
catalog version (shop/catalog/cache.py), so a page costs the version's Redis GET and a lookup
in the process's memory instead of rendering base.html and the page around its fragments.

Only a visitor with neither a session cookie nor a messages cookie gets a shared page: such a
visitor is anonymous, has an empty cart and no messages, so the page holds nothing of them but
the CSRF token. The page is rendered with a hole in the token's place (`csrf_token` in the
view's context outranks the context processor's) and every response fills the hole with this
visitor's own token, which sets their CSRF cookie as a normal render would. Anyone with a
session (a cart, signed in, a message waiting) gets the page rendered for them, from fragments.
"""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from shop.catalog.cache import (
    CSRF_HOLE,
    fragment_key,
    request_catalog_version,
    store_fragment,
    stored_fragment,
)

SHARED_PAGE_ATTRIBUTE = "_catalog_shared_page"


def visitor_without_session(request) -> bool:
    """A GET without a session or a message (an emptied cookie, as Django's test client keeps
    sending after a deletion, holds neither)."""
    cookies = request.COOKIES
    return (
        request.method == "GET"
        and not cookies.get(settings.SESSION_COOKIE_NAME)
        and not cookies.get(CookieStorage.cookie_name)
    )


def no_parameters(request) -> str | None:
    """The page key's query part for pages without parameters: any query string is not cached."""
    return "" if not request.GET else None


def render_catalog_page(request, template_name: str, context: dict):
    """`render()`, with the CSRF token left as a hole when the page is to be shared."""
    if getattr(request, SHARED_PAGE_ATTRIBUTE, False):
        context = {**context, "csrf_token": CSRF_HOLE}
    return render(request, template_name, context)


def page_response(request, html: str, response=None):
    """The shared page with this visitor's CSRF token in its holes (the header `Vary: Cookie`
    that a rendered page gets from reading the session)."""
    if CSRF_HOLE in html:
        html = html.replace(CSRF_HOLE, get_token(request))
    if response is None:
        response = HttpResponse()
    response.content = html
    patch_vary_headers(response, ("Cookie",))
    return response


def shared_page(query_key: Callable, *, process_only: bool = False):
    """Cache the decorated catalog view's whole page for visitors without a session.

    `query_key(request)` is the key's part for the query string, or None to render the page
    without sharing it (parameters the view does not know, free text that must not fill Redis
    unless `process_only`)."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            query = query_key(request) if visitor_without_session(request) else None
            if query is None:
                return view(request, *args, **kwargs)
            version = request_catalog_version(request)  # before any catalog query
            key = fragment_key(version, "page", (request.get_host(), request.path, query))
            html = stored_fragment(key, process_only=process_only)
            if html is not None:
                return page_response(request, html)
            setattr(request, SHARED_PAGE_ATTRIBUTE, True)
            response = view(request, *args, **kwargs)
            html = response.content.decode(response.charset)
            if response.status_code == 200:
                store_fragment(key, html, process_only=process_only)
            return page_response(request, html, response)

        return wrapper

    return decorate
