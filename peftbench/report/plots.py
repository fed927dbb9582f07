"""Matplotlib figures rendered to inline SVG strings: Pareto plots and predicted vs measured memory.

The SVG is trimmed for inlining into HTML: no XML prolog or DOCTYPE (they carry http URLs and are invalid
inside HTML), no metadata block, no comments, and every id prefixed so several figures on one page cannot
clash. Text stays text (`svg.fonttype: none`), which keeps pages small; matplotlib escapes it.
"""

from __future__ import annotations

import io
import re
from typing import Any

from peftbench.report import fmt

AXES = (  # x field, axis label, log scale
    ("peak_memory_bytes", "peak memory (MiB)", False),
    ("train_seconds", "train time (s)", False),
    ("adapter_bytes", "adapter size (bytes, log)", True),
)
# Task and method names are the user's text: `$` must not start matplotlib's mathtext (`cost $\frac{x$` would
# crash the report) and no text is handed to LaTeX.
_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "peftbench", "font.size": 9, "axes.titlesize": 9,
          "text.parse_math": False, "text.usetex": False}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display: reports are generated headless
    import matplotlib.pyplot as plt

    return plt


def figure_svg(fig, prefix: str) -> str:
    """The figure as an inline-ready `<svg>` element."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None,
                                                                      "Format": None, "Type": None})
    _pyplot().close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\sxmlns(:xlink)?="[^"]*"', "", svg)  # the HTML parser puts inline SVG in its namespace
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    svg = re.sub(r"\n\s*", "\n", svg)
    return svg.replace("<svg", f'<svg role="img" class="plot" aria-label="{prefix}"', 1)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (lower x and higher y), ordered by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def pareto_svg(summary: dict[str, dict[str, float]], primary: str, prefix: str) -> str:
    """Quality against peak memory, train time and adapter size, one panel each, front drawn as steps."""
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
        for ax, (field, label, log) in zip(axes, AXES, strict=True):
            points = []
            for method, values in sorted(summary.items()):
                x, y = values.get(field), values.get("quality")
                if fmt.missing(x) or fmt.missing(y) or (log and x <= 0):
                    continue
                x = x / 2**20 if field == "peak_memory_bytes" else x
                points.append((x, y))
                ax.errorbar(x, y, yerr=values.get("quality_std") or 0, fmt="o", ms=5, capsize=2, color="#3569a8")
                ax.annotate(method, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
            front = pareto_front(points)
            if len(front) > 1:
                xs, ys = zip(*front, strict=True)
                ax.plot(xs, ys, drawstyle="steps-post", color="#d0542c", lw=1.2, label="Pareto front")
                ax.legend(loc="lower right", fontsize=7, frameon=False)
            elif front:
                ax.plot(*front[0], "o", mfc="none", mec="#d0542c", ms=11, label="Pareto front")
            if log:
                ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(primary)
            ax.grid(alpha=0.3)
            ax.margins(x=0.15, y=0.15)
        fig.tight_layout()
        return figure_svg(fig, prefix)


def prediction_svg(rows: list[dict[str, Any]], prefix: str) -> str | None:
    """Predicted against measured peak memory per run, with the y = x line and a ±10% band."""
    pairs = [(r["measured"] / 2**20, r["predicted"] / 2**20, str(r["task"])) for r in rows
             if r["error"] is not None and r["measured"] > 0 and r["predicted"] > 0]
    if not pairs:
        return None
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        for index, task in enumerate(sorted({p[2] for p in pairs})):
            xs = [p[0] for p in pairs if p[2] == task]
            ys = [p[1] for p in pairs if p[2] == task]
            ax.plot(xs, ys, "o", ms=5, alpha=0.8, color=f"C{index}", label=task)
        low = min(min(p[0], p[1]) for p in pairs) * 0.8
        high = max(max(p[0], p[1]) for p in pairs) * 1.25
        line = [low, high]
        ax.plot(line, line, color="#444", lw=1, label="exact")
        ax.fill_between(line, [v * 0.9 for v in line], [v * 1.1 for v in line], color="#999", alpha=0.2,
                        label="±10%")
        if high / low > 20:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_xlabel("measured (MiB)")
        ax.set_ylabel("predicted (MiB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False, loc="upper left")
        fig.tight_layout()
        return figure_svg(fig, prefix)


def safe_id(text: str) -> str:
    """An id fragment from arbitrary text (task names come from results files)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", text)[:40]
    return cleaned if cleaned and not cleaned[0].isdigit() else f"t{cleaned}"



def inference_pareto_svg(summary: dict[str, dict[str, float]], primary: str, prefix: str) -> str | None:
    """Quality against inference overhead (the cost of serving): one point per method at its served overhead (merged
    where it merges, else unmerged; `inference_overhead`), a hollow ring at the unmerged overhead where that
    differs (`inference_overhead_unmerged`), and the Pareto front of the served points. None without data."""
    points = [(v["inference_overhead"], v["quality"], m) for m, v in sorted(summary.items())
              if not fmt.missing(v.get("inference_overhead")) and not fmt.missing(v.get("quality"))]
    if not points:
        return None
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for x, y, method in points:
            ax.errorbar(x, y, yerr=summary[method].get("quality_std") or 0, fmt="o", ms=5, capsize=2,
                        color="#3569a8")
            ax.annotate(method, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
            unmerged = summary[method].get("inference_overhead_unmerged")
            if not fmt.missing(unmerged) and abs(unmerged - x) > 1e-9:
                ax.plot(unmerged, y, "o", mfc="none", mec="#3569a8", ms=6, alpha=0.6)
                ax.plot([x, unmerged], [y, y], color="#3569a8", lw=0.6, alpha=0.4)
        front = pareto_front([(x, y) for x, y, _ in points])
        if len(front) > 1:
            xs, ys = zip(*front, strict=True)
            ax.plot(xs, ys, drawstyle="steps-post", color="#d0542c", lw=1.2, label="Pareto front (served)")
        ax.axvline(1.0, color="#444", lw=0.8, ls=":", label="base model")
        ax.set_xlabel("inference latency / base model (served; ring: unmerged)")
        ax.set_ylabel(primary)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7, frameon=False)
        ax.margins(x=0.15, y=0.15)
        fig.tight_layout()
        return figure_svg(fig, prefix)
