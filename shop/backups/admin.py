"""The backup status page in the Django admin, read from the backup storage (not the database)."""

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from shop.backups import alerts, s3
from shop.backups.chart import history_charts
from shop.backups.errors import BackupError
from shop.backups.inventory import list_sets, newest_good_set, offsite_state
from shop.backups.models import BackupSet
from shop.backups.status import read_status


@admin.register(BackupSet)
class BackupSetAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            # Local sets only: S3 listing is slow and may be down; offsite state comes from status.json.
            sets, _ = list_sets("local")
            error = ""
        except BackupError as exc:
            sets, error = [], str(exc)
        good = newest_good_set()
        offsite = offsite_state(good["id"] if good else None)
        status = read_status()
        context = {
            **self.admin_site.each_context(request),
            "title": "Backups",
            "opts": self.model._meta,
            "sets": sets,
            "status": status,
            "alerts": alerts.current_alerts(status),
            "max_age_hours": alerts.max_age().total_seconds() / 3600,
            "charts": history_charts(status.get("history", [])),
            "error": error,
            "backup_path": settings.BACKUP_PATH,
            "s3_target": s3.describe_target() if s3.configured() else "",
            "schedule": settings.BACKUP_SCHEDULE,
            "offsite": offsite,
            **_pitr_context(status),
            "image_archive": _image_archive_report(status),
        }
        return TemplateResponse(request, "admin/backups/status.html", context)


def _pitr_context(status: dict) -> dict:
    if not settings.PITR_ENABLED:
        return {}
    from shop.backups.pitr.monitor import pitr_report

    return {
        "pitr": pitr_report(status),
        "pitr_full_schedule": settings.PITR_FULL_SCHEDULE,
        "pitr_diff_schedule": settings.PITR_DIFF_SCHEDULE,
    }


def _image_archive_report(status: dict) -> dict | None:
    if not settings.BACKUP_ARCHIVE_IMAGES:
        return None
    from shop.backups.image_archive import archive_report

    return archive_report(status)
