from django.db import models


class BackupSet(models.Model):
    """No table: a handle so the admin lists "Backup sets", read from the backup storage.

    Backup state is kept on the backup volume, not in the database a restore would replace.
    """

    class Meta:
        managed = False
        default_permissions = ("view",)
        verbose_name = "backup set"

    def __str__(self):
        return "backup set"
