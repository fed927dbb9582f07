"""The pilot page's two figures, as inline SVG: validation score by learning rate (each candidate's sweep, with
its bootstrap interval) and training loss per step.

The runs record no validation loss per step (only the training loss per step and the validation score at the
end), so the "validation curve" of a candidate is its score across the learning rates it tried: the curve the
selection was made on. The training-loss panel shows whether a run was still learning when its steps ran out.
"""

from __future__ import annotations

from typing import Any

from peftbench.report.plots import _STYLE, _pyplot, figure_svg, plain
from peftbench.report.verdict import display

FIGURE_INCHES = (5.2, 3.4)


def sweep_svg(candidates: list[dict[str, Any]], metric: str, prefix: str = "pilot-sweep") -> str | None:
    """Validation score against learning rate per candidate, 80% bootstrap interval as error bars, the selected
    rate circled. None when no sweep run scored."""
    drawn = [c for c in candidates if any(p["score"] is not None for p in c["sweep"])]
    if not drawn:
        return None
    plt = _pyplot()
    titles = {}
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=FIGURE_INCHES)
        for index, cand in enumerate(drawn):
            points = sorted((p for p in cand["sweep"] if p["score"] is not None), key=lambda p: p["rate"])
            rates, scores = [p["rate"] for p in points], [p["score"] for p in points]
            below = [p["score"] - p["low"] if p["low"] is not None else 0 for p in points]
            above = [p["high"] - p["score"] if p["high"] is not None else 0 for p in points]
            colour = f"C{index}"
            ax.errorbar(rates, scores, yerr=[below, above], fmt="o-", ms=4, lw=1.2, capsize=3, color=colour,
                        label=plain(display(cand["method"])), gid=f"sweep-{index}")
            titles[f"sweep-{index}"] = "\n".join(
                f"{cand['method']} · lr {p['rate']:.2g}: {p['score']:.1f} {metric}" for p in points)
            chosen = [p for p in points if p["selected"]]
            if chosen:
                ax.plot([chosen[0]["rate"]], [chosen[0]["score"]], "o", ms=11, mfc="none", mew=1.5, color=colour)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale; circled: selected)")
        ax.set_ylabel(f"validation {plain(metric)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        return figure_svg(fig, prefix, f"validation {metric} by learning rate, one line per candidate", titles)


def loss_svg(candidates: list[dict[str, Any]], prefix: str = "pilot-loss") -> str | None:
    """Training loss per step: each candidate's selected run solid, its sweep runs faint. None without curves."""
    drawn = [c for c in candidates if c["curves"]]
    if not drawn:
        return None
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=FIGURE_INCHES)
        for index, cand in enumerate(drawn):
            colour = f"C{index}"
            # one legend entry per candidate: its selected run, or its first sweep run while none is selected yet
            named = any(curve["selected"] for curve in cand["curves"])
            for curve in cand["curves"]:
                steps, losses = [p[0] + 1 for p in curve["points"]], [p[1] for p in curve["points"]]
                if curve["selected"]:
                    ax.plot(steps, losses, "-", lw=1.6, color=colour,
                            label=plain(f"{display(cand['method'])} (lr {curve['rate']:.2g}, selected)"))
                else:
                    ax.plot(steps, losses, "--", lw=0.8, alpha=0.45, color=colour,
                            label=None if named else plain(f"{display(cand['method'])} (sweep)"))
                    named = True
        ax.set_xlabel("optimizer step (dashed: the sweep's other rates, on the training rows outside validation)")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        return figure_svg(fig, prefix, "training loss per step, one colour per candidate")
