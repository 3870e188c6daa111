"""The layout of the plotly figures in pixels: rows stacked over one x axis, their titles, notes,
y ticks and legends, and a colour per series.

A figure is laid out for the height it is drawn at (the report's figures grow with their rows,
optuna-dashboard draws them in cards of a fixed height): the margins hold the title, the note
and the x axis, the gap between two panels holds the lower one's title, and each panel gets as
many y ticks as it has room for. Nothing here imports plotly.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any, NamedTuple

__all__ = [
    "DASHBOARD_HEIGHT",
    "NOTE_WIDTH",
    "SERIES_COLORS",
    "Stack",
    "add_note",
    "lay_out",
    "legend_style",
    "log_ticks",
    "note_lines",
    "series_colors",
    "stack",
]

#: Characters per line of a figure's note (the subtitle): about 600 pixels at its font size, so
#: that it fits the narrowest figure it is drawn on (a dashboard card) and is never cut off.
NOTE_WIDTH = 90
#: Pixels of the figure's title, above everything else.
TITLE_ROOM = 44
#: Pixels of a line of the note, and between the note and the first panel's title.
NOTE_LINE = 15
NOTE_GAP = 8
#: Pixels of a panel's title, just above the panel (the gap between two panels).
ROW_TITLE = 26
#: Pixels under the last panel: the x axis' tick labels and its title.
X_AXIS_ROOM = 56
#: The height of a panel in a figure whose height follows its rows (the report's).
PANEL = 190
#: The least height of a panel, however many rows a fixed height has to hold.
LEAST_PANEL = 40
#: The least pixels between two y tick labels (a label is about 14 pixels high).
TICK_SPACING = 30
#: Pixels of a legend entry of one line (font size 11), and of each further line of its name.
LEGEND_ENTRY = 20
LEGEND_LINE = 15
#: optuna-dashboard draws user-defined figures in cards of this height (pixels).
DASHBOARD_HEIGHT = 450
#: A colour per series: plotly's qualitative palette, then its 24 darker colours.
SERIES_COLORS = (
    *("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A"),
    *("#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52"),
    *("#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A"),
    *("#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1"),
    *("#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1"),
    *("#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038"),
)


class Stack(NamedTuple):
    """Where the parts of a figure of panels stacked over one x axis go, in pixels.

    Attributes:
        height: The figure's height.
        top: The top margin: the title, the note under it and the first panel's title.
        bottom: The bottom margin: the x axis' tick labels and title.
        gap: Between two panels: the lower one's title.
        panel: The height of each panel.
    """

    height: int
    top: int
    bottom: int
    gap: int
    panel: float

    @property
    def spacing(self) -> float:
        """The gap as ``make_subplots``' ``vertical_spacing``: a fraction of the plot area."""
        return self.gap / max(self.height - self.top - self.bottom, 1)

    @property
    def ticks(self) -> int:
        """The most y ticks a panel holds with its labels apart (two at the least)."""
        return max(2, int(self.panel // TICK_SPACING))


def stack(rows: int, *, note: int = 0, height: int | None = None) -> Stack:
    """The layout of ``rows`` panels under a title and a note of ``note`` lines: panels of
    :data:`PANEL` pixels, or the panels that fill ``height`` (never under :data:`LEAST_PANEL`:
    the figure grows instead)."""
    rows = max(rows, 1)
    top = TITLE_ROOM + (NOTE_LINE * note + NOTE_GAP if note else 0) + ROW_TITLE
    bottom, gap = X_AXIS_ROOM, ROW_TITLE
    fixed = top + bottom + (rows - 1) * gap
    panel = float(PANEL) if height is None else max((height - fixed) / rows, LEAST_PANEL)
    return Stack(max(height or 0, math.ceil(fixed + rows * panel)), top, bottom, gap, panel)


def note_lines(text: str, width: int = NOTE_WIDTH) -> list[str]:
    """``text`` wrapped into lines of at most ``width`` characters (words kept whole)."""
    return textwrap.wrap(text, width) if text else []


def add_note(fig: Any, text: str, *, middle: bool) -> None:
    """``text`` on the figure, wrapped so that it is never cut off: in the middle of an empty
    figure (its axes hidden), else above the first panel's title, where the figure's
    :func:`stack` left room for :func:`note_lines` of it."""
    lines = note_lines(text)
    if not lines:
        return
    fig.add_annotation(
        text="<br>".join(lines),
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5 if middle else 1.0,
        yanchor="middle" if middle else "bottom",
        yshift=0 if middle else ROW_TITLE + NOTE_GAP // 2,
        showarrow=False,
        align="center",
        font={"color": "#555", "size": 13 if middle else 11},
        name="note",
    )
    if middle:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)


def lay_out(fig: Any, title: str, st: Stack) -> None:
    """The figure's height, margins and title for the layout ``st``, its panels' titles (in
    the gaps) a size smaller, a compact legend right of the panels; call it before
    :func:`add_note`."""
    fig.update_layout(
        height=st.height,
        margin={"t": st.top, "b": st.bottom, "l": 70, "r": 20},
        title={"text": title, "y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 14}},
        legend=legend_style(),
    )
    fig.update_annotations(font={"size": 14})  # the panels' titles (before any note)


def legend_style() -> dict[str, Any]:
    """A vertical legend right of the panels, from their top, its entries close together (so
    that a dashboard card shows them all)."""
    return {
        "x": 1.01,
        "xanchor": "left",
        "y": 1.0,
        "yanchor": "top",
        "tracegroupgap": 0,
        "font": {"size": 11},
    }


def log_ticks(values: list[float], most: int = 12) -> list[float]:
    """Tick values of a log axis over ``values``, at most ``most``: the 1-2-5 steps inside
    their range, else the powers of ten, else every second (third ...) power of ten; when fewer
    than two fall inside, the range's ends and its geometric middle.

    Example:
        >>> log_ticks([0.00024, 0.997], most=5)
        [0.001, 0.01, 0.1]
    """
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    if not pos:
        return []
    lo, hi = min(pos), max(pos)
    exponents = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)

    def inside(v: float) -> bool:
        return lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)

    steps = [m * 10.0**e for e in exponents for m in (1.0, 2.0, 5.0) if inside(m * 10.0**e)]
    decades = [float(f"1e{e}") for e in exponents if inside(10.0**e)]
    if 3 <= len(steps) <= most:
        return steps
    most = max(most, 2)
    if len(decades) >= 2:
        return decades[:: math.ceil(len(decades) / most)]
    if len(steps) > most:
        return steps[:: math.ceil(len(steps) / most)]
    ends = sorted({lo, math.sqrt(lo * hi), hi})
    if most < 3:
        ends = [lo, hi] if lo < hi else [lo]
    return [float(f"{v:.2g}") for v in ends]


def series_colors(labels: list[str]) -> dict[str, str]:
    """A colour of :data:`SERIES_COLORS` per series, in order: no two series of a figure share
    one (up to 34 series)."""
    return {name: SERIES_COLORS[k % len(SERIES_COLORS)] for k, name in enumerate(labels)}
