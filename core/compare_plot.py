"""PNG charts of several jobs side by side: their district KPIs, or their learning curves.

Why matplotlib's Agg canvas on a figure of our own (not ``pyplot``): pyplot keeps global figure
state that is not safe across the threads the API renders in; a ``Figure`` with its own Agg
canvas is. Sizes are fixed in inches at a fixed DPI (no ``bbox_inches="tight"``), so a chart's
pixel size follows from what it shows (the KPI chart's margins are fixed too) (:func:`kpi_size`, :data:`CURVES_SIZE`).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

DPI = 100
WIDTH_IN = 10.0
PANELS_PER_ROW = 3
PANEL_HEIGHT_IN = 2.5
TITLE_HEIGHT_IN = 0.5  # above the panels: the title
LEGEND_HEIGHT_IN = 0.6  # below them: the legend
CURVES_SIZE = (WIDTH_IN, 5.5)
MAX_PANELS = 12
# When a table has more KPIs than fit, these are drawn (CityLearn's and OPEVA's cost, energy
# and emission KPIs): the ones users compare runs on.
HEADLINE = re.compile(r"cost|energy|electricity_consumption|consumption|emission|carbon|co2", re.IGNORECASE)


@dataclass(frozen=True)
class Series:
    """One job's learning curve: its label and MLflow's points."""

    label: str
    points: Sequence[tuple[int, float]]


def headline_kpis(names: Sequence[str]) -> list[str]:
    """The KPIs drawn: all when they fit, otherwise the cost/energy/emission ones (at most MAX_PANELS)."""
    if len(names) <= MAX_PANELS:
        return list(names)
    chosen = [n for n in names if HEADLINE.search(n)] or list(names)
    return chosen[:MAX_PANELS]


def kpi_size(n_kpis: int) -> tuple[int, int]:
    """The PNG's ``(width, height)`` in pixels for ``n_kpis`` panels."""
    rows = max(1, math.ceil(n_kpis / PANELS_PER_ROW))
    return round(WIDTH_IN * DPI), round((TITLE_HEIGHT_IN + LEGEND_HEIGHT_IN + rows * PANEL_HEIGHT_IN) * DPI)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _colors(n: int) -> list[str]:
    return [f"C{i % 10}" for i in range(n)]


def kpi_chart(labels: Sequence[str], kpis: Sequence[tuple[str, Sequence[float | None]]], title: str) -> bytes:
    """One panel per KPI, one bar per job (the same colour for a job in every panel): KPIs of
    different units and scales each get their own axis. A missing value is no bar, marked "n/a"."""
    rows = max(1, math.ceil(len(kpis) / PANELS_PER_ROW))
    width, height = kpi_size(len(kpis))
    # fixed margins, not layout="constrained": the same picture in half the time (bench/compare_plot.py)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    inches = height / DPI
    figure.subplots_adjust(left=0.07, right=0.98, top=1 - TITLE_HEIGHT_IN / inches, bottom=LEGEND_HEIGHT_IN / inches,
                           hspace=0.45, wspace=0.3)
    figure.suptitle(title, y=1 - 0.1 / inches, va="top")
    colors = _colors(len(labels))
    if not kpis:
        axis = figure.add_subplot(1, 1, 1)
        axis.axis("off")
        axis.text(0.5, 0.5, "none of these jobs exported district KPIs", ha="center", va="center")
        return _png(figure)
    for index, (name, values) in enumerate(kpis):
        axis = figure.add_subplot(rows, PANELS_PER_ROW, index + 1)
        positions = range(len(labels))
        axis.bar(positions, [v if v is not None else 0.0 for v in values], color=colors)
        for position, value in zip(positions, values):
            if value is None:
                axis.text(position, 0, "n/a", ha="center", va="bottom", fontsize=8)
        axis.set_title(name, fontsize=9)
        axis.set_xticks(list(positions), [str(i + 1) for i in positions], fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
    handles = [Patch(color=c) for c in colors]
    figure.legend(handles, [f"{i + 1}: {label}" for i, label in enumerate(labels)], loc="lower center",
                  ncols=min(len(labels), 4), fontsize=8)
    return _png(figure)


def curves_chart(series: Sequence[Series], metric: str, title: str) -> bytes:
    """One line per job of ``metric`` against MLflow's step, every point MLflow holds."""
    figure = Figure(figsize=CURVES_SIZE, dpi=DPI, layout="constrained")
    axis = figure.add_subplot(1, 1, 1)
    for color, one in zip(_colors(len(series)), series):
        steps = [step for step, _ in one.points]
        values = [value for _, value in one.points]
        axis.plot(steps, values, color=color, marker="." if len(steps) <= 200 else None,
                  label=f"{one.label} ({len(steps)} points)")
    axis.set_xlabel("step")
    axis.set_ylabel(metric)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _png(figure)
