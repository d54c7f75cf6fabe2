import re

from shop.accounts.models import User

PASSWORD = "a-long-Passphrase-42"


def signup(client, username="erin", email="erin@example.com"):
    return client.post(
        "/accounts/signup/",
        {
            "username": username,
            "email": email,
            "first_name": "Erin",
            "last_name": "E",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )


def test_signup_signs_the_customer_in(client, db):
    response = signup(client)
    assert response.status_code == 302
    assert client.get("/accounts/orders/").status_code == 200
    assert User.objects.get(username="erin").email == "erin@example.com"


def test_an_email_address_has_one_account(client, db):
    signup(client)
    response = signup(client, username="other", email="ERIN@example.com")
    assert response.status_code == 200
    assert "exists already" in response.content.decode()
    assert User.objects.count() == 1


def test_sign_in_and_out(client, db):
    User.objects.create_user("frank", "frank@example.com", PASSWORD)
    response = client.post("/accounts/login/", {"username": "frank", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/accounts/orders/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/accounts/orders/").status_code == 302  # back to the sign-in page


def test_order_history_needs_an_account(client, db):
    response = client.get("/accounts/orders/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_wrong_password_is_described_on_both_fields(client, db):
    """The error belongs to neither field alone: both are marked invalid and point at it."""
    User.objects.create_user("gail", "gail@example.com", PASSWORD)
    response = client.post("/accounts/login/", {"username": "gail", "password": "not-it"})

    html = response.content.decode()
    assert response.status_code == 200
    assert '<ul class="errorlist nonfield" id="sign-in-error" role="alert">' in html
    for name in ("username", "password"):
        field = re.search(rf'<input[^>]*name="{name}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in field
        assert 'aria-describedby="sign-in-error"' in field


def test_the_sign_in_form_marks_nothing_invalid_before_a_mistake(client, db):
    html = client.get("/accounts/login/").content.decode()
    assert "aria-invalid" not in html
    assert "sign-in-error" not in html
