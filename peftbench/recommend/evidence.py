"""peftbench's own evidence: run records turned into "quality relative to full fine-tuning" rows.

Read with the json module rather than pandas: this is on the path of every `recommend` call, and
importing pandas alone costs ~1.5 s on the benchmark CPU.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peftbench.record import RunRecord

# One score per task kind, on the 0-100 scale the harness records. ROUGE-L for generation because the
# published table we compare with (LoRA paper, SAMSum) reports it; accuracy where a task has one answer.
PRIMARY_METRIC = {"classification": "accuracy", "multiple_choice": "accuracy", "generation": "rougeL"}
# Translation tasks report BLEU and chrF only: chrF, which stays informative at the low scores small models get.
FALLBACK_METRIC = {"generation": "chrf"}
# A full fine-tuning score below this is too close to zero for a ratio to mean anything (a tiny model
# that learned nothing); the ratio's denominator is floored here.
MIN_REFERENCE_SCORE = 5.0
MAX_RATIO = 3.0


@dataclass
class Run:
    """One successful run reduced to what the recommender uses."""

    run_id: str
    suite: str
    task: str
    kind: str
    model: str
    architecture: str
    method: str
    family: str
    seed: int
    score: float
    hyperparameters: dict[str, Any]
    trainable_params: int
    total_params: int
    train_examples: int
    mean_input_tokens: float
    mean_target_tokens: float
    steps: int = 0  # optimizer steps trained
    config: str = ""  # method plus the hyper-parameter that distinguishes configurations (LoRA rank)
    relative: float | None = None  # score / full fine-tuning's score on the same task and seed
    reference_run: str | None = None  # the full fine-tuning run it is relative to
    # False where its task cannot tell methods apart (`informativeness`: no method separates, or none beats
    # chance or the majority class): shown in tables, never evidence (`points.own_points`).
    informative: bool = True

    @property
    def task_key(self) -> str:
        return f"{self.suite}/{self.task}"


@dataclass
class Evidence:
    runs: list[Run]
    failed: list[RunRecord] = field(default_factory=list)  # status != ok, kept for the reasons
    files_hash: str = ""
    paths: list[Path] = field(default_factory=list)  # the runs files read

    def tasks(self) -> list[str]:
        return sorted({r.task for r in self.runs})


def config_label(method: str, hyperparameters: dict[str, Any]) -> str:
    rank = hyperparameters.get("r")
    return f"{method} r={rank}" if isinstance(rank, int) and rank > 0 else method


def results_hash(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        if path.is_file():
            digest.update(str(path.parent.name).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _to_run(rec: RunRecord) -> Run | None:
    kind = rec.task_kind or ""  # a record without a kind names no metric below, so it gives no run
    metrics = rec.metrics
    score = metrics.get(PRIMARY_METRIC.get(kind, ""), metrics.get(FALLBACK_METRIC.get(kind, "")))
    if not rec.ok or score is None or (isinstance(score, float) and math.isnan(score)):
        return None
    hps = dict(rec.hyperparameters)
    return Run(run_id=rec.run_id, suite=rec.suite, task=rec.task, kind=kind,
               model=rec.model or "", architecture=rec.architecture or "", method=rec.method,
               family=rec.family or "", seed=int(rec.seed or 0), score=float(score),
               hyperparameters=hps, trainable_params=int(rec.trainable_params or 0),
               total_params=int(rec.total_params or 0), train_examples=int(rec.train_examples or 0),
               mean_input_tokens=float(rec.mean_input_tokens or 0.0),
               mean_target_tokens=float(rec.mean_target_tokens or 0.0),
               steps=int(rec.steps or 0), config=config_label(rec.method, hps))


def attach_relative(runs: list[Run]) -> None:
    """Score each run against full fine-tuning on the same suite, task, model and seed.

    Same seed, because the seed also fixes data order and head initialisation: pairing removes that
    shared noise. Without a same-seed full run, the mean over the task's full runs is used instead.
    """
    full: dict[tuple, dict[int, Run]] = defaultdict(dict)
    for run in runs:
        if run.method == "full":
            full[(run.suite, run.task, run.model)][run.seed] = run
    for run in runs:
        refs = full.get((run.suite, run.task, run.model))
        if not refs:
            continue
        ref = refs.get(run.seed)
        ref_score = ref.score if ref else sum(r.score for r in refs.values()) / len(refs)
        ratio = run.score / max(ref_score, MIN_REFERENCE_SCORE)
        run.relative = min(ratio, MAX_RATIO)
        run.reference_run = ref.run_id if ref else None


def load_evidence(paths: list[Path]) -> Evidence:
    from peftbench.informativeness import task_informativeness
    from peftbench.results import latest_records, tuned_over_untuned

    records = tuned_over_untuned(latest_records(paths))
    runs = [run for rec in records if (run := _to_run(rec)) is not None]
    attach_relative(runs)
    verdicts = task_informativeness(records)
    for run in runs:
        verdict = verdicts.get(f"{run.suite}/{run.task}") or verdicts.get(run.task)
        run.informative = verdict is None or verdict.informative
    failed = [r for r in records if not r.ok]
    return Evidence(runs=runs, failed=failed, files_hash=results_hash(paths), paths=list(paths))


def seed_spread(runs: list[Run], max_examples: int) -> dict[str, tuple[float, list[str]]]:
    """method -> (mean over small tasks of the seed std of relative quality, supporting run ids).

    "Unstable on small data" is measured, not assumed: the spread of a method's relative score across
    seeds on tasks with at most `max_examples` training examples.
    """
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.relative is not None and run.train_examples <= max_examples:
            groups[(run.method, run.task_key)].append(run)
    per_method: dict[str, list[float]] = defaultdict(list)
    ids: dict[str, list[str]] = defaultdict(list)
    for (method, _), group in groups.items():
        if len(group) < 2:
            continue
        values = [r.relative for r in group if r.relative is not None]  # all of them: grouped only with one
        mean = sum(values) / len(values)
        per_method[method].append(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)))
        ids[method].extend(r.run_id for r in group)
    return {m: (sum(v) / len(v), ids[m]) for m, v in per_method.items()}
