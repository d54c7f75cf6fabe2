"""Sign-in throttling (django-axes): wrong passwords lock out a username from an address."""

import pytest
from django.test import Client

from shop.accounts.models import User

PASSWORD = "a-long-Passphrase-42"
SIGN_IN_PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture
def staff_user(db):
    return User.objects.create_user("gina", "gina@example.com", PASSWORD, is_staff=True, is_superuser=True)


def sign_in(client, url, password, **extra):
    return client.post(url, {"username": "gina", "password": password}, **extra)


def is_signed_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url", SIGN_IN_PAGES)
def test_the_right_password_is_refused_after_twenty_wrong_ones(client, staff_user, url):
    for attempt in range(20):
        sign_in(client, url, f"wrong-{attempt}")

    response = sign_in(client, url, PASSWORD)

    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()
    assert "15 minutes" in response.content.decode()
    assert not is_signed_in(client)


@pytest.mark.parametrize("url", SIGN_IN_PAGES)
def test_a_few_mistakes_do_not_lock_out(client, staff_user, url):
    for attempt in range(4):
        assert sign_in(client, url, f"wrong-{attempt}").status_code == 200

    assert sign_in(client, url, PASSWORD).status_code == 302
    assert is_signed_in(client)


def test_the_lockout_is_per_username_and_address(staff_user):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for attempt in range(6):
        sign_in(attacker, "/accounts/login/", f"wrong-{attempt}")
    assert sign_in(attacker, "/accounts/login/", PASSWORD).status_code == 429

    owner = Client(REMOTE_ADDR="198.51.100.20")
    assert sign_in(owner, "/accounts/login/", PASSWORD).status_code == 302


def test_behind_nginx_the_address_nginx_saw_counts_not_the_one_the_client_claims(staff_user):
    """nginx appends the peer address to X-Forwarded-For; what is left of it is the client's claim."""
    client = Client(REMOTE_ADDR="10.0.0.2")  # nginx
    for attempt in range(6):
        forwarded = f"192.0.2.{attempt}, 203.0.113.7"  # a new made-up address each time
        sign_in(client, "/accounts/login/", f"wrong-{attempt}", HTTP_X_FORWARDED_FOR=forwarded)

    locked = sign_in(client, "/accounts/login/", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.7")
    assert locked.status_code == 429
    other_customer = sign_in(client, "/accounts/login/", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert other_customer.status_code == 302


@pytest.mark.parametrize(
    ("forwarded_for", "proxies_in_front", "expected"),
    [
        (None, 0, "10.0.0.2"),  # no nginx in front: the peer
        ("203.0.113.7", 0, "203.0.113.7"),
        ("1.2.3.4, 172.18.0.1", 0, "172.18.0.1"),  # a private address is an address too
        ("1.2.3.4, 203.0.113.7, 198.51.100.1", 1, "203.0.113.7"),  # a load balancer before nginx
        ("203.0.113.7", 1, "203.0.113.7"),  # fewer entries than proxies: the left-most there is
        ("1.2.3.4, not-an-address", 0, "10.0.0.2"),
    ],
)
def test_client_address(rf, settings, forwarded_for, proxies_in_front, expected):
    from shop.accounts.throttling import client_ip

    settings.TRUSTED_PROXY_COUNT = proxies_in_front
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    assert client_ip(rf.get("/", REMOTE_ADDR="10.0.0.2", **extra)) == expected
