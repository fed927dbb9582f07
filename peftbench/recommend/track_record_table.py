"""The track record (`evaluate.evaluate`) as the markdown tables of benchmarks/recommender_track_record.md and
`peftbench recommend --evaluate`."""

from __future__ import annotations

from typing import Any

from peftbench.recommend.evaluate import WIDE


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(summary: list[dict[str, Any]]) -> list[str]:
    lines = ["| strategy | comparisons | mean regret (points) | top-1 hit | top-3 hit | Spearman ρ (n) | "
             f"ρ, ≥{WIDE} methods (n) |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        rho = "-" if s["rho"] is None else f"{s['rho']:.2f} ({s['rho_n']})"
        wide = "-" if s.get("rho_wide") is None else f"{s['rho_wide']:.2f} ({s['rho_wide_n']})"
        lines.append(f"| {s['strategy']} | {s['comparisons']} | {s['mean_regret']:.2f} | {s['top1']:.0%} | "
                     f"{s['top3']:.0%} | {rho} | {wide} |")
    return lines


def format_table(report: dict[str, Any]) -> str:
    loso, loto = report["leave_one_source_out"], report["leave_one_task_out"]
    lines = [f"Leave-one-source-out over {loso['sources']} published sources (each predicted from the others plus "
             "peftbench's reference runs); regret in the comparison's metric points.", ""]
    lines += _table(loso["summary"])
    lines += ["", "Per held-out source (recommender):", "",
              "| source | comparisons | mean regret | top-1 | top-3 | ρ |", "|---|---|---|---|---|---|"]
    lines += [f"| {f['fold']} | {f['comparisons']} | {f['mean_regret']:.2f} | {f['top1']:.0%} | {f['top3']:.0%} | "
              f"{_rho(f['rho'])} |" for f in loso["per_source"]]
    lines += ["", f"Leave-one-task-out over {loto['tasks']} own reference tasks (predicted from the corpus plus the "
                  "other tasks); regret in accuracy / ROUGE-L / chrF points.", ""]
    lines += _table(loto["summary"]) if loto["summary"] else ["(no own task with full FT and another method)"]
    if loto.get("per_task"):
        lines += ["", "Per held-out task: the recommender beside 'full FT whenever it fits' (regret in points, ρ).", "",
                  "| task | methods | regret | ρ | full-FT rule regret | full-FT rule ρ |", "|---|---|---|---|---|---|"]
        lines += [f"| {t['task']} | {t['methods']} | {t['regret']:.1f} | {_rho(t['rho'])} | "
                  f"{t['full_ft_regret']:.1f} | {_rho(t['full_ft_rho'])} |" for t in loto["per_task"]]
    single = report.get("single_run")
    if single and single["summary"]:
        lines += ["", f"Single run over {single['comparisons']} comparisons with learning-rate sweeps: each method "
                      "scored at the rate a user runs without tuning (peftbench's default rate on its own tasks, "
                      "the swept rate nearest peftbench's suggestion in a published sweep).", ""]
        lines += _table(single["summary"])
    if "in_sample_ceiling" in report:
        lines += ["", "In-sample ceiling: the same comparisons predicted with their own source included (not a "
                      "track record: the answers were seen).", ""]
        lines += _table(report["in_sample_ceiling"]["summary"])
    return "\n".join(lines)
