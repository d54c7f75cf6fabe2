"""The shop's own settings plus one URL: the bare view that ops/bench/storefront.py compares with."""

from shop.settings import *  # noqa: F403

ROOT_URLCONF = "ops.bench.storefront_urls"
