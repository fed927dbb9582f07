"""Matplotlib figures rendered to inline SVG strings (Pareto panels: `pareto`), and predicted vs measured memory.

The SVG is trimmed for inlining into HTML: no XML prolog or DOCTYPE (they carry http URLs and are invalid
inside HTML), no metadata block, no comments, and every id prefixed so several figures on one page cannot
clash. Text stays text (`svg.fonttype: none`), which keeps pages small; matplotlib escapes it.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

from peftbench.report import fmt

# Task, metric and method names are the user's text: each passes through `plain` before matplotlib sees it, so a
# `$` in it cannot start mathtext (`cost $\frac{x$` would crash the report, `a $x$ b` would typeset). Mathtext
# itself stays on: matplotlib's own log-axis tick labels (10^8) are mathtext. No text is handed to LaTeX.
_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "peftbench", "font.size": 9, "axes.titlesize": 9,
          "text.usetex": False}
MARKER = "#3569a8"
FRONT = "#d0542c"


def plain(text: object) -> str:
    """User text as matplotlib shows it literally: every `$` escaped, so none opens mathtext."""
    return str(text).replace("$", r"\$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display: reports are generated headless
    import matplotlib.pyplot as plt

    return plt


def figure_svg(fig, prefix: str, label: str = "", titles: dict[str, str] | None = None,
               css_class: str = "plot") -> str:
    """The figure as an inline-ready `<svg>` element. `titles` maps an artist's gid to its hover text: the
    artist's group gets an SVG `<title>` (the browser shows it as a tooltip; no script needed)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None,
                                                                      "Format": None, "Type": None})
    _pyplot().close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    for gid, title in (titles or {}).items():  # before ids are prefixed: gids are ours, so matched exactly
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(title)}</title>', 1)
    svg = re.sub(r'\sxmlns(:xlink)?="[^"]*"', "", svg)  # the HTML parser puts inline SVG in its namespace
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    svg = re.sub(r"\n\s*", "\n", svg)
    return svg.replace("<svg", f'<svg role="img" class="{css_class}" aria-label="{html.escape(label or prefix)}"', 1)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (lower x and higher y), ordered by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def prediction_svg(rows: list[dict[str, Any]], prefix: str) -> str | None:
    """Predicted against measured peak memory per run, with the y = x line and a ±10% band; each run's point
    names its task, method, seed and error on hover."""
    runs = [r for r in rows if r["error"] is not None and r["measured"] > 0 and r["predicted"] > 0]
    if not runs:
        return None
    plt = _pyplot()
    titles = {}
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        colours = {task: f"C{i}" for i, task in enumerate(sorted({str(r["task"]) for r in runs}))}
        for index, run in enumerate(runs):
            task = str(run["task"])
            first = next(r for r in runs if str(r["task"]) == task) is run
            ax.plot(run["measured"] / 2**20, run["predicted"] / 2**20, "o", ms=5, alpha=0.8, color=colours[task],
                    label=plain(task) if first else None, gid=f"point-{index}")
            titles[f"point-{index}"] = _run_hover(task, run)
        low = min(min(r["measured"], r["predicted"]) for r in runs) / 2**20 * 0.8
        high = max(max(r["measured"], r["predicted"]) for r in runs) / 2**20 * 1.25
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
        return figure_svg(fig, prefix, "predicted against measured peak memory, one point per run", titles)


def _run_hover(task: str, run: dict[str, Any]) -> str:
    return (f"{task} · {run.get('method', '?')} · seed {run.get('seed', '?')}\npredicted "
            f"{fmt.human_bytes(run['predicted'])}, measured {fmt.human_bytes(run['measured'])} ({run['error']:+.1f}%)")


def safe_id(text: str) -> str:
    """An id fragment from arbitrary text (task names come from results files)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", text)[:40]
    return cleaned if cleaned and not cleaned[0].isdigit() else f"t{cleaned}"
