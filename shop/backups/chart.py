"""The admin's backup history chart: size and duration of each set over time, as inline SVG.

Computed here as plain coordinates and drawn by a template (no JavaScript, no CDN, and no
style attributes, which the Content-Security-Policy would block): testable without a browser.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shop.backups.progress import human_bytes

WIDTH, HEIGHT = 640, 160
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 12, 24  # margins for the axis labels


@dataclass
class Chart:
    title: str
    max_label: str
    first_label: str = ""
    last_label: str = ""
    points: list[dict] = field(default_factory=list)  # x, y (pixels) and a label for the tooltip
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_bottom: int = HEIGHT - BOTTOM

    @property
    def polyline(self) -> str:
        return " ".join(f"{point['x']},{point['y']}" for point in self.points)


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def history_charts(history: list[dict]) -> list[Chart]:
    """One chart of the set sizes and one of the backup durations, oldest set on the left."""
    runs = [run for run in history if run.get("at")]
    return [
        _chart("Size of each set", runs, "bytes", human_bytes),
        _chart("Duration of each backup", runs, "duration_seconds", _seconds),
    ]


def _chart(title: str, runs: list[dict], key: str, label: Callable[[float], str]) -> Chart:
    runs = [run for run in runs if run.get(key) is not None]
    if not runs:
        return Chart(title, max_label="")
    times = [datetime.fromisoformat(run["at"]).timestamp() for run in runs]
    values = [float(run[key]) for run in runs]
    span, top = (max(times) - min(times)) or 1.0, max(values) or 1.0
    chart = Chart(title, max_label=label(top), first_label=runs[0]["at"][:10], last_label=runs[-1]["at"][:10])
    plot_width, plot_height = chart.plot_right - chart.plot_left, chart.plot_bottom - TOP
    for run, at, value in zip(runs, times, values, strict=True):
        x = chart.plot_left + (plot_width * (at - min(times)) / span if len(runs) > 1 else plot_width / 2)
        y = chart.plot_bottom - plot_height * value / top
        chart.points.append({"x": round(x, 1), "y": round(y, 1), "label": f"{run['id']}: {label(value)}"})
    return chart
