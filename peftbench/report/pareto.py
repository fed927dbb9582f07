"""Pareto panels: a task's quality against one cost each (peak memory, train time, adapter size, inference latency).

A task compares 16-20 methods, several configurations each; their names do not fit on a plot as text. Only the
points a reader decides between are labelled — the Pareto front and the recommender's pick — and the labels
are placed so that no two overlap. Every point names itself with its numbers on hover: an SVG `<title>`, so
the page stays one offline file and needs no script.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from peftbench.report import fmt
from peftbench.report.plots import _STYLE, FRONT, MARKER, _pyplot, figure_svg, pareto_front, plain

PANELS = (  # summary field, axis label, log scale, id slug
    ("peak_memory_bytes", "peak memory (MiB)", False, "memory"),
    ("train_seconds", "train time (s)", False, "time"),
    ("adapter_bytes", "adapter size (bytes, log scale)", True, "adapter"),
)
PANEL_INCHES = (5.2, 3.6)  # two panels a row fill the page's content width (report.css), at ~1.3x this size
LABEL_PT = 8
PICK = "#1a7f37"
# Label boxes are kept this far apart (points): the browser's text box is a little taller than matplotlib's
# measure (line height against glyph height), and a reader without DejaVu Sans gets a fallback font.
LABEL_GAP_PT = 2.5
# Where a label may sit around its point (points; alignment follows the side), nearest first.
OFFSETS = tuple((sx * step * 5, sy * step * 4) for step in (1, 2, 3, 4, 6)
                for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 2), (0, -2)))


NOT_COMPARED = "\n(plain runs at the default rate: this method's tuned runs are the ones compared)"


@dataclass
class PlotPoint:
    x: float
    y: float
    err: float
    name: str  # the configuration, as the tables name it
    hover: str
    compared: bool = True  # False: a method's plain runs where its tuned runs are compared; drawn, never on the front


def hover_text(name: str, values: dict[str, float], primary: str) -> str:
    """What a point's tooltip says: the configuration and every number the panels plot."""
    quality = fmt.mean_std(values.get("quality"), values.get("quality_std"), 2 if values.get("quality_std") else 1)
    lines = [name, f"{primary}: {quality}", f"peak memory {fmt.human_bytes(values.get('peak_memory_bytes'))}",
             f"train time {fmt.human_seconds(values.get('train_seconds'))}",
             f"adapter {fmt.human_bytes(values.get('adapter_bytes'))}"]
    if not fmt.missing(values.get("inference_overhead")):
        lines.append(f"inference latency ×{values['inference_overhead']:.2f} of the base model (served)")
    return "\n".join(lines)


def pareto_panels(summary: dict[str, dict[str, float]], primary: str, prefix: str, pick: str | None = None,
                  task: str = "", shown_only: Collection[str] = frozenset()) -> list[str]:
    """One SVG per cost with data: quality against peak memory, train time and adapter size, then inference
    latency where measured. `pick` names the configuration the recommender's pick stands for; `shown_only` the
    configurations drawn but not compared (hollow, off the front), as the tables' verdicts leave them out."""
    panels = []
    for field, label, log, slug in PANELS:
        points = []
        for name, values in sorted(summary.items()):
            x, y = values.get(field), values.get("quality")
            if x is None or y is None or fmt.missing(x) or fmt.missing(y) or (log and x <= 0):
                continue
            x = x / 2**20 if field == "peak_memory_bytes" else x
            points.append(PlotPoint(x, y, values.get("quality_std") or 0.0, name, hover_text(name, values, primary),
                                name not in shown_only))
        if points:
            panels.append(_panel(points, primary, label, f"{prefix}-{slug}", f"{task}: {primary} against {label}",
                                 pick=pick, log=log))
    inference = inference_panel(summary, primary, f"{prefix}-inference", pick, task, shown_only)
    return panels + ([inference] if inference else [])


def inference_panel(summary: dict[str, dict[str, float]], primary: str, prefix: str, pick: str | None = None,
                    task: str = "", shown_only: Collection[str] = frozenset()) -> str | None:
    """Quality against inference latency relative to the base model: one point per configuration at its served
    latency (merged where it merges), a ring at the unmerged latency where that differs, the front of the served
    points. None without data."""
    points = [PlotPoint(v["inference_overhead"], v["quality"], v.get("quality_std") or 0.0, m,
                        hover_text(m, v, primary), m not in shown_only) for m, v in sorted(summary.items())
              if not fmt.missing(v.get("inference_overhead")) and not fmt.missing(v.get("quality"))]
    if not points:
        return None

    def rings_and_base(ax) -> None:
        for point in points:
            unmerged = summary[point.name].get("inference_overhead_unmerged")
            if unmerged is not None and not fmt.missing(unmerged) and abs(unmerged - point.x) > 1e-9:
                ax.plot(unmerged, point.y, "o", mfc="none", mec=MARKER, ms=6, alpha=0.6)
                ax.plot([point.x, unmerged], [point.y, point.y], color=MARKER, lw=0.6, alpha=0.4)
        ax.axvline(1.0, color="#444", lw=0.8, ls=":", label="base model")

    label = "inference latency / base model (served; ring: unmerged)"
    return _panel(points, primary, label, prefix, f"{task}: {primary} against {label}", pick=pick,
                  decorate=rings_and_base)


def _panel(points: list[PlotPoint], primary: str, xlabel: str, prefix: str, aria: str, pick: str | None = None,
           log: bool = False, decorate: Callable[[Any], None] | None = None) -> str:
    """One panel: every point with its error bar and hover title, the front as a staircase, the pick starred,
    and labels on the front and the pick only."""
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=PANEL_INCHES)
        titles = {}
        for index, point in enumerate(points):
            if point.err:
                ax.errorbar(point.x, point.y, yerr=point.err, fmt="none", ecolor=MARKER, alpha=0.35, capsize=2, lw=0.8)
            style = {"color": MARKER} if point.compared else {"mfc": "none", "mec": "#8a94a6"}
            ax.plot(point.x, point.y, "o", ms=5, gid=f"point-{index}", **style)
            titles[f"point-{index}"] = point.hover + ("" if point.compared else NOT_COMPARED)
        front = pareto_front([(p.x, p.y) for p in points if p.compared])
        if len(front) > 1:
            xs, ys = zip(*front, strict=True)
            ax.plot(xs, ys, drawstyle="steps-post", color=FRONT, lw=1.2, label="Pareto front")
        elif front:
            ax.plot(*front[0], "o", mfc="none", mec=FRONT, ms=11, label="Pareto front")
        picked = [p for p in points if p.name == pick]
        for point in picked:
            ax.plot(point.x, point.y, "*", ms=14, mfc="none", mec=PICK, mew=1.4, label="recommended")
        if decorate:
            decorate(ax)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(plain(primary))
        ax.grid(alpha=0.3)
        ax.margins(x=0.12, y=0.12)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=7, frameon=False)
        fig.tight_layout()
        on_front = set(front)
        labelled = picked + [p for p in points if p.compared and (p.x, p.y) in on_front and p not in picked]
        place_labels(ax, labelled, points, emphasised={p.name for p in picked})
        return figure_svg(fig, prefix, aria, titles, "plot pareto")


def place_labels(ax, labelled: list[PlotPoint], points: list[PlotPoint],
                 emphasised: Collection[str] = frozenset()) -> None:
    """Label `labelled` in order, each at the nearest offset where it stays inside the axes, clear of every label
    placed before it and, where possible, of every point; a label with no clear place is left out (its point
    still names itself on hover). Measured in display space, so the layout must be final."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()  # fixes limits and layout: boxes are measured against them
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    radius = 3.0 * fig.dpi / 72
    centres = [tuple(ax.transData.transform((p.x, p.y))) for p in points]
    dots = [Bbox.from_bounds(cx - radius, cy - radius, 2 * radius, 2 * radius) for cx, cy in centres]
    taken: list[Bbox] = []
    for index, point in enumerate(labelled):
        own = centres[points.index(point)]
        others = [dot for dot, centre in zip(dots, centres, strict=True) if centre != own]
        style = {"color": PICK, "fontweight": "bold"} if point.name in emphasised else {"color": "#1d2330"}
        probe = ax.annotate(plain(point.name), (point.x, point.y), xytext=(0, 0), textcoords="offset points",
                            fontsize=LABEL_PT, **style)
        spot = _clear_spot(probe, renderer, frame, taken, others)
        probe.remove()
        if spot is None:
            continue
        (dx, dy), box = spot
        near = abs(dx) <= OFFSETS[0][0] and abs(dy) <= OFFSETS[0][1]
        leader = None if near else {"arrowstyle": "-", "color": "#8a94a6", "lw": 0.6, "shrinkA": 1, "shrinkB": 3}
        ax.annotate(plain(point.name), (point.x, point.y), xytext=(dx, dy), textcoords="offset points",
                    fontsize=LABEL_PT, gid=f"label-{index}", arrowprops=leader, **_alignment(dx, dy), **style)
        taken.append(box)


def _alignment(dx: float, dy: float) -> dict[str, str]:
    """The text grows away from its point: to the right of a point on its right, upwards above it."""
    return {"ha": "left" if dx > 0 else "right" if dx < 0 else "center", "va": "bottom" if dy > 0 else "top"}


def _clear_spot(text, renderer, frame, taken: list, dots: list):
    """The first offset (nearest first) whose label box is inside the frame and clear of the labels taken and of
    the points; failing that, the one clear of labels that covers the fewest points; None if every one clashes."""
    gap = LABEL_GAP_PT * text.figure.dpi / 72
    anchor = text.axes.transData.transform(text.xy)
    best = None
    for dx, dy in OFFSETS:
        text.xyann = (dx, dy)
        alignment = _alignment(dx, dy)
        text.set_horizontalalignment(alignment["ha"])
        text.set_verticalalignment(alignment["va"])
        box = text.get_window_extent(renderer).padded(gap)
        if not (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)):
            continue
        if any(box.overlaps(other) for other in taken) or _leader_crosses(anchor, box, taken):
            continue
        hits = sum(box.overlaps(dot) for dot in dots)
        if best is None or hits < best[0]:
            best = (hits, (dx, dy), box)
        if hits == 0:
            break
    return None if best is None else best[1:]


def _leader_crosses(anchor, box, taken: list, samples: int = 12) -> bool:
    """Whether the line from a point to the nearest edge of its label would run through a label already placed."""
    x, y = min(max(anchor[0], box.x0), box.x1), min(max(anchor[1], box.y0), box.y1)
    steps = [(anchor[0] + (x - anchor[0]) * i / samples, anchor[1] + (y - anchor[1]) * i / samples)
             for i in range(1, samples)]
    return any(other.contains(px, py) for other in taken for px, py in steps)
