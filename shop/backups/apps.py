from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "shop.backups"
    label = "backups"
