from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """The shop's user model: its own from the start, so fields can be added later without
    the pain of swapping the user model on a live database."""

    class Meta:
        db_table = "accounts_user"
