"""Scores per step as a line plot drawn with characters: y axis 0..1 with ticks, steps on x,
one marker and colour per series and a legend. textual-plotext is not a dependency, and the
plot has to stay readable at 80 columns, so it is drawn here on a grid of cells."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

Series = list[tuple[int, float]]  # (step, score in [0, 1])

STYLES = (("●", "bold #5fafff"), ("×", "bold #ff8787"), ("◆", "bold #87d787"))
Y_TICKS = (1.0, 0.0, 0.5, 0.25, 0.75)  # by priority: a short plot keeps the ends and the middle
LABEL_W = 5  # "0.75" and a space


def render_score_plot(series: dict[str, Series], width: int, height: int) -> Text:
    """`series` by label (drawn in order, later ones on top); width/height in cells, axes included."""
    points = [p for s in series.values() for p in s]
    if not points:
        return Text("no step has finished yet: scores appear here per step", style="dim")
    plot_w = max(8, width - LABEL_W - 1)
    plot_h = max(3, height - 3)  # the x axis, its labels and the legend below
    lo, hi = min(s for s, _ in points), max(s for s, _ in points)

    def col(step: int) -> int:
        return 0 if hi == lo else round((step - lo) * (plot_w - 1) / (hi - lo))

    def row(score: float) -> int:
        return round((1.0 - max(0.0, min(1.0, score))) * (plot_h - 1))

    grid: list[list[tuple[str, str]]] = [[(" ", "")] * plot_w for _ in range(plot_h)]
    for i, (label, pts) in enumerate(series.items()):
        marker, style = STYLES[i % len(STYLES)]
        cells = sorted((col(s), row(v)) for s, v in pts)
        for (c0, r0), (c1, r1) in zip(cells, cells[1:]):  # the line between two steps
            for c in range(c0 + 1, c1):
                r = round(r0 + (r1 - r0) * (c - c0) / (c1 - c0))
                if grid[r][c][0] == " ":
                    grid[r][c] = ("·", style)
        for c, r in cells:
            grid[r][c] = (marker, style)

    tick_rows: dict[int, float] = {}
    for t in Y_TICKS:
        tick_rows.setdefault(row(t), t)  # two ticks on one row: the more important one stays
    out = Text()
    for r in range(plot_h):
        tick = tick_rows.get(r)
        out.append(f"{tick:>4.2f} " if tick is not None else " " * LABEL_W, style="dim")
        out.append("┤" if tick is not None else "│", style="dim")
        for ch, style in grid[r]:
            out.append(ch, style=style)
        out.append("\n")
    out.append(" " * LABEL_W + "└" + "─" * plot_w + "\n", style="dim")
    labels = [" "] * plot_w
    for step in sorted({s for s, _ in points}):
        text = str(step)
        c = min(col(step), plot_w - len(text))
        if all(ch == " " for ch in labels[max(0, c - 1):c + len(text) + 1]):  # never overlap two labels
            labels[c:c + len(text)] = list(text)
    out.append("step".ljust(LABEL_W + 1) + "".join(labels).rstrip() + "\n", style="dim")
    out.append(" " * (LABEL_W + 1))
    for i, label in enumerate(series):
        marker, style = STYLES[i % len(STYLES)]
        out.append(f"{marker} {label}", style=style)
        out.append("   ")
    return out


class ScorePlot(Static):
    """Redraws the plot to its own size whenever it changes."""

    def __init__(self, series: dict[str, Series], **kw: object) -> None:
        super().__init__("", **kw)  # type: ignore[arg-type]
        self.series = series

    def set_series(self, series: dict[str, Series]) -> None:
        self.series = series
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def on_mount(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width, height = self.content_size.width or 60, self.content_size.height or 12
        self.update(render_score_plot(self.series, width, height))


__all__ = ["ScorePlot", "Series", "render_score_plot"]
