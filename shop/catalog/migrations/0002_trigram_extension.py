from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    """pg_trgm lets search find products despite typos (database/init creates it too)."""

    dependencies = [("catalog", "0001_initial")]

    operations = [TrigramExtension()]
