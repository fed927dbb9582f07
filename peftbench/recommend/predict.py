"""One method's predicted quality relative to full fine-tuning: own-results model and published evidence,
each with its spread, combined by precision weighting (the less certain source counts less)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from peftbench.recommend.evidence import Run
from peftbench.recommend.published import published_estimate
from peftbench.recommend.quality import NUMERIC, Z_80, RelativeQualityModel, task_features

# Methods never run here whose quality is taken from a close relative, with the reason shown.
PROXIES = {"qlora": ("lora", "QLoRA trains LoRA adapters on a 4-bit base (not runnable on this CPU): quality taken "
                             "from LoRA's evidence; Dettmers et al. 2023 (arXiv 2305.14314) report 16-bit parity")}
PUBLISHED_FLOOR_SD = 0.02  # two published tables cannot pin a ratio down to better than ~2 points


@dataclass
class QualityPrediction:
    mean: float | None
    low: float | None
    high: float | None
    sources: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Subject:
    """What the prediction is about: the task (descriptor numbers) and the model."""

    kind: str
    architecture: str
    total_params: float
    train_examples: float | None
    mean_input_tokens: float | None
    mean_target_tokens: float | None


def _own(qmodel: RelativeQualityModel, subject: Subject, method: str, family: str,
         trainable: float) -> tuple[float, float, dict[str, Any]] | None:
    known = f"method={method}|1" in qmodel.columns_ or f"family={family}|1" in qmodel.columns_
    if not known:
        return None
    feats = task_features(subject.kind, subject.architecture, subject.total_params,
                          subject.train_examples or 1.0, subject.mean_input_tokens or 1.0,
                          subject.mean_target_tokens or 0.0, trainable)
    # Unknown descriptors sit at the training mean: they then move no prediction either way.
    for name, value in (("log_train_examples", subject.train_examples), ("log_input_tokens", subject.mean_input_tokens),
                        ("log_target_tokens", subject.mean_target_tokens)):
        if value is None:
            feats[name] = qmodel.mean_[name]
    x = {"method": method, "family": family, **feats}
    mean, sd = (float(v[0]) for v in qmodel.predict_interval([x]))
    outside = qmodel.out_of_range(x)
    # Each decade of model size beyond what was benchmarked doubles the own model's uncertainty.
    sd *= 1.0 + abs(outside.get("log_total_params", 0.0))
    return mean, sd, {"out_of_range": outside, "method_seen": method in qmodel.methods_}


def predict_quality(qmodel: RelativeQualityModel | None, runs: list[Run], subject: Subject, method: str,
                    family: str, trainable: float, use_published: bool = True) -> QualityPrediction:
    if method == "full":
        return QualityPrediction(1.0, 1.0, 1.0, {"definition": "full fine-tuning is the reference (100%)"},
                                 evidence=_full_evidence(runs, subject))
    source, notes = method, []
    if method in PROXIES:
        source, note = PROXIES[method]
        notes.append(note)
    parts: list[tuple[str, float, float]] = []
    pred = QualityPrediction(None, None, None, notes=notes)
    own = _own(qmodel, subject, source, family, trainable) if qmodel else None
    if own:
        mean, sd, info = own
        parts.append(("own", mean, sd))
        mine = [r for r in runs if r.method == source and r.relative is not None]
        pred.sources["own"] = {"mean": round(mean, 4), "sd": round(sd, 4), "runs": len(mine),
                               "tasks": len({r.task for r in mine}), **info}
        pred.evidence.extend(_own_evidence(mine, subject))
        if info["out_of_range"]:
            pred.notes.append("outside the benchmarked range (" + ", ".join(
                f"{k.removeprefix('log_')} by {v:+.1f} decades" for k, v in info["out_of_range"].items()) +
                "): the own-results prediction is held at the range edge and widened")
    pub = published_estimate(source, subject.total_params, subject.kind) if use_published else None
    if pub:
        nearest = min(abs(math.log10(p.total_params) - math.log10(max(subject.total_params, 1))) for p in pub.points)
        sd = max((pub.high - pub.low) / 4, PUBLISHED_FLOOR_SD) * (1.0 + nearest)
        parts.append(("published", pub.relative, sd))
        pred.sources["published"] = {"mean": round(pub.relative, 4), "sd": round(sd, 4), "points": len(pub.points)}
        pred.evidence.extend(p.cite() for p in pub.points[:2])
    if parts:
        weights = [1 / sd ** 2 for _, _, sd in parts]
        mean = sum(w * m for w, (_, m, _) in zip(weights, parts, strict=True)) / sum(weights)
        sd = math.sqrt(1 / sum(weights))
        pred.mean, pred.low, pred.high = mean, mean - Z_80 * sd, mean + Z_80 * sd
    return pred


def _own_evidence(runs: list[Run], subject: Subject, limit: int = 3) -> list[str]:
    """The most similar benchmark tasks' runs: same kind first, then closest training-set size."""
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        by_task.setdefault(run.task_key, []).append(run)

    def distance(group: list[Run]) -> tuple[int, float]:
        size = subject.train_examples or group[0].train_examples
        return (group[0].kind != subject.kind, abs(math.log10(max(group[0].train_examples, 1) / max(size, 1))))

    lines = []
    for task, group in sorted(by_task.items(), key=lambda kv: distance(kv[1]))[:limit]:
        rel = sum(r.relative for r in group) / len(group)
        lines.append(f"{task} ({group[0].model}, {group[0].train_examples} examples): {rel:.0%} of full FT over "
                     f"{len(group)} seed(s); runs {', '.join(r.run_id for r in group)}")
    return lines


def _full_evidence(runs: list[Run], subject: Subject, limit: int = 3) -> list[str]:
    """For full FT (always 100% of itself): how it compared with the best alternative on similar tasks."""
    fulls = [r for r in runs if r.method == "full"]
    lines = []
    for line in _own_evidence(fulls, subject, limit):
        task = line.split(" ", 1)[0]
        others = [r for r in runs if r.task_key == task and r.method != "full" and r.relative is not None]
        if others:
            best = max({r.method for r in others}, key=lambda m: sum(r.relative for r in others if r.method == m))
            rel = [r.relative for r in others if r.method == best]
            line = line.replace("100% of full FT", f"reference; best other method {best} at {sum(rel) / len(rel):.0%}")
        lines.append(line)
    return lines


__all__ = ["NUMERIC", "PROXIES", "QualityPrediction", "Subject", "predict_quality"]
