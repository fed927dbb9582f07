"""Leave-one-task-out track record of the recommender against the rules people use today.

For each benchmarked task, the quality model is refitted without that task (every suite holding the same
data is left out too), the recommender picks among the configurations that ran on it, and the pick is
scored by the task's measured mean over seeds. Regret = best measured score - the pick's score, in the
task's metric points (accuracy, ROUGE-L, or chrF for translation). All configurations ran on the same CPU,
so all are feasible.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftbench.recommend.evidence import PRIMARY_METRIC, Run, task_scores
from peftbench.recommend.fitting import default_evidence, fit_quality
from peftbench.recommend.predict import Subject, predict_quality

Picker = Callable[[list[Run], dict[str, float], list[Run]], str | None]


def size_rule_rank(train_examples: float) -> int:
    """axolotl PR #3691: r=8 under 1k examples, 16 under 10k, 32 under 100k, else 64."""
    return 8 if train_examples < 1_000 else 16 if train_examples < 10_000 else 32 if train_examples < 100_000 else 64


def _lora_with_rank(task_runs: list[Run], rank: int) -> str | None:
    """The measured LoRA configuration with this rank, or the nearest measured rank."""
    ranks = {r.hyperparameters.get("r"): r.config for r in task_runs if r.method == "lora"}
    if not ranks:
        return None
    return ranks[min(ranks, key=lambda k: (abs(int(k or 0) - rank), int(k or 0)))]


def _recommender(use_published: bool) -> Picker:
    def pick(train: list[Run], scores: dict[str, float], task_runs: list[Run]) -> str | None:
        qmodel = fit_quality(train)
        first = task_runs[0]
        subject = Subject(first.kind, first.architecture, first.total_params, first.train_examples,
                          first.mean_input_tokens, first.mean_target_tokens)
        predicted = {}
        for config in scores:
            runs = [r for r in task_runs if r.config == config]
            trainable = statistics.mean(r.trainable_params for r in runs)
            pred = predict_quality(qmodel, train, subject, runs[0].method, runs[0].family, trainable, use_published)
            if pred.mean is not None:
                predicted[config] = pred.mean
        return max(predicted, key=lambda c: (predicted[c], c == "full")) if predicted else None
    return pick


STRATEGIES: dict[str, Picker] = {
    "recommender": _recommender(True),
    "recommender, own results only": _recommender(False),
    "always LoRA r=16": lambda train, scores, runs: _lora_with_rank(runs, 16),
    "rank by dataset size": lambda train, scores, runs: _lora_with_rank(runs, size_rule_rank(runs[0].train_examples)),
}


def evaluate(results: Path | None = None, runs: list[Run] | None = None) -> dict[str, Any]:
    runs = runs if runs is not None else default_evidence(results).runs
    by_key: dict[str, list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.task_key, []).append(run)
    # Only tasks where full FT ran (the reference) and at least two configurations can be compared.
    keys = sorted(k for k, rs in by_key.items()
                  if any(r.method == "full" for r in rs) and len({r.config for r in rs}) > 1)
    rows: list[dict[str, Any]] = []
    for key in keys:
        task_runs = by_key[key]
        train = [r for r in runs if r.task != task_runs[0].task]
        scores = task_scores(task_runs)[key]
        ordered = sorted(scores, key=lambda c: -scores[c])
        for name, picker in STRATEGIES.items():
            choice = picker(train, scores, task_runs)
            if choice is None:
                continue
            rows.append({"task": key, "strategy": name, "pick": choice, "best": ordered[0],
                         "regret": scores[ordered[0]] - scores[choice],
                         "top1": scores[choice] >= scores[ordered[0]], "top3": choice in ordered[:3]})
    return {"tasks": len(keys), "runs": sum(len(by_key[k]) for k in keys), "rows": rows,
            "metric": PRIMARY_METRIC, "summary": _summary(rows)}


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in STRATEGIES:
        mine = [r for r in rows if r["strategy"] == name]
        if mine:
            out.append({"strategy": name, "tasks": len(mine),
                        "mean_regret": round(statistics.mean(r["regret"] for r in mine), 2),
                        "top1": round(sum(r["top1"] for r in mine) / len(mine), 3),
                        "top3": round(sum(r["top3"] for r in mine) / len(mine), 3)})
    return out


def format_table(report: dict[str, Any]) -> str:
    lines = [f"Leave-one-task-out over {report['tasks']} tasks ({report['runs']} runs); regret in metric points "
             "(accuracy for classification / multiple choice, ROUGE-L for generation, chrF for translation).",
             "",
             "| strategy | tasks | mean regret | top-1 hit | top-3 hit |", "|---|---|---|---|---|"]
    lines += [f"| {s['strategy']} | {s['tasks']} | {s['mean_regret']:.2f} | {s['top1']:.0%} | {s['top3']:.0%} |"
              for s in report["summary"]]
    if not report["summary"]:
        lines.append("| (no task has full fine-tuning and another configuration yet) | 0 | - | - | - |")
    picks = [r for r in report["rows"] if r["strategy"] == "recommender"]
    if picks:
        lines += ["", "Per task (recommender): " + "; ".join(
            f"{r['task']} picked {r['pick']} (best {r['best']}, regret {r['regret']:.1f})" for r in picks)]
    return "\n".join(lines)
