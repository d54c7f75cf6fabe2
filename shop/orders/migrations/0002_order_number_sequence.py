from django.db import migrations


class Migration(migrations.Migration):
    """Human-readable order numbers (SO-100001, ...) from a sequence: unique without retries,
    and carried by pg_dump with the data, so a restore continues the series."""

    dependencies = [("orders", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE IF NOT EXISTS orders_order_number_seq START WITH 100001",
            "DROP SEQUENCE IF EXISTS orders_order_number_seq",
        ),
    ]
