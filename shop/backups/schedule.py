"""How far apart the runs of a cron schedule (BACKUP_SCHEDULE) are: the base of the staleness alert."""

import itertools
from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery.schedules import crontab

# Two whole years of days, so that monthly and yearly schedules are measured too.
_FIRST_DAY = date(2025, 1, 1)
_DAYS = 2 * 366


def _runs_on(schedule: "crontab", day: date) -> bool:
    # Celery's crontab runs on a day that matches both the day of month and the day of week
    # (cron's 0 = Sunday; Python's weekday() 0 = Monday).
    return (
        day.month in schedule.month_of_year
        and day.day in schedule.day_of_month
        and (day.weekday() + 1) % 7 in schedule.day_of_week
    )


def cron_schedule(expression: str) -> "crontab":
    """Celery's crontab of a 5-field cron expression ("minute hour day-of-month month day-of-week")."""
    from celery.schedules import crontab  # here, not at the top: Celery costs ~0.15 s to import

    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    return crontab(minute, hour, day_of_week, day_of_month, month_of_year)


def longest_gap(schedule: "crontab | str") -> timedelta:
    """The longest time between two consecutive runs of `schedule` (over two years of runs)."""
    if isinstance(schedule, str):
        schedule = cron_schedule(schedule)
    times = sorted(timedelta(hours=h, minutes=m) for h in schedule.hour for m in schedule.minute)
    days = [d for n in range(_DAYS) if _runs_on(schedule, d := _FIRST_DAY + timedelta(days=n))]
    if len(days) < 2:  # e.g. only on February 29th: at most once in the window
        return timedelta(days=_DAYS)
    within_a_day = max((b - a for a, b in itertools.pairwise(times)), default=timedelta(0))
    # From the last run of one run day to the first run of the next run day.
    between_days = max(
        timedelta(days=(following - day).days) - times[-1] + times[0]
        for day, following in itertools.pairwise(days)
    )
    return max(within_a_day, between_days)
