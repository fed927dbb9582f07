"""Evidence points: one (comparison, method configuration) each, from the published corpus and the reference
suites, on one scale, with the descriptors that say which regime each comes from.

A *comparison* is a set of methods measured side by side on one task, model and setting (a table's row
block, or one benchmark task of a reference suite). Only differences inside a comparison are evidence about
methods: the comparison's own level (an easy task, a strong model) is absorbed by `regime.fit`'s comparison
effect. Each point's value is its score over the comparison's reference score: the published figure's
reference row (corpus), or full FT's mean over the seeds (peftbench's own runs). One scale for both, because
`regime.fit` pools differences to LoRA across them: an own task measured above its baseline = max(chance,
majority share) instead, where full FT sits just above the majority class (drug_review_condition: 49.7 vs
42.9), turned a 10-point gap into +150% and carried it to every other query near it (the report's
pick for bbc_topic was then BOFT at "113%", which measured below full FT there). The baseline still
decides whether an own comparison is evidence at all (below), and each own point's citation states it.

What is not evidence, and why (`Excluded` lists each with a count):
- the smoke suite (a 2-minute plumbing check, not a measurement);
- own comparisons whose full-FT reference is indistinguishable from chance (binomial standard error from the
  eval size): there is nothing to be relative to;
- ms-swift's benchmark rows: they measure general ability (GSM8K/ARC/CEval) *after* training on agent data,
  i.e. forgetting, not quality on the trained task;
- rows that quote another source's measurement (BOFT's Table 1 baselines are AdaLoRA's Table 1), and a figure
  two sources print: counted once, in the source that measured it. The other copies stay in their tables as
  *anchors* (`Point.anchor`): the reference the quoting paper's own methods are compared to, never evidence
  of their own (without them BOFT's OFT and BOFT rows would sit in comparisons with nothing to compare to);
- averages over a source's own per-task rows (glue_avg...), lower-is-better metrics (TER), rows without a
  peftbench method or without a reference score.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from peftbench.recommend.corpus import PublishedRow, load_corpus
from peftbench.recommend.evidence import Run

GENERATION_KINDS = ("generation", "summarization", "translation")
FORGETTING_SOURCES = {"ms_swift_benchmark": "measures general ability (GSM8K/ARC/CEval) after agent-data SFT, "
                                            "i.e. forgetting, not quality on the trained task: excluded"}
# Tables that probe a mechanism rather than measure a task anyone fine-tunes for: kept in the corpus (they are
# what the paper printed) but not evidence about which method to use.
PROBE_TABLES = {("jiang2024_mora", "Table 2"): "a synthetic probe (memorizing random UUID pairs), not a task: excluded"}
# The peftbench method each source introduced: it does not count as an independent source for that method
# (`regime.MIN_SOURCES_FOR_FIRST`): a source does not vouch independently for its own method. LoRA's paper and
# repository introduced the reference every difference is taken to.
PROPOSED_BY = {"hu2021_lora": "lora", "microsoft_lora_repo": "lora", "nvlabs_dora_repo": "dora",
               "zhang2023_adalora": "adalora", "liu2024_boft": "boft", "liu2022_ia3_tfew": "ia3",
               "li2021_prefix_tuning": "prefix_tuning", "lester2021_prompt_tuning": "prompt_tuning",
               "dettmers2023_qlora": "qlora"}
NOT_EVIDENCE_SUITES = {"smoke": "the smoke suite is a plumbing check (one seed, a few steps): not evidence"}
# A task whose table says "no method separates" (or whose best method does not clearly beat chance or
# the majority class) says nothing about which method is better.
NON_INFORMATIVE = "a task that cannot tell methods apart (peftbench.informativeness): not evidence"
LOWER_IS_BETTER = frozenset({"ter"})
# One metric per comparison, the first the source reports in this order (several metrics of one table row
# are one measurement, not several).
METRIC_PREFERENCE = ("accuracy", "f1", "exact_match", "matthews_corr", "pearson", "spearman", "rougeL", "rougeLsum",
                     "rouge2", "rouge1", "bleu", "codebleu", "meteor", "mt_bench", "f1a", "cider", "nist")
ASSUMED_BATCH = 16  # to turn "N epochs" into steps where a source gives epochs but no batch size
MIN_Z_ABOVE_CHANCE = 2.0  # full FT must beat chance by this many binomial standard errors
BASELINES_FILE = Path(__file__).resolve().parent / "data" / "task_baselines.json"


@dataclass(frozen=True)
class Point:
    """One method configuration's result in one comparison, on the comparison's relative scale."""

    source: str  # corpus source_id, or "own:<suite>"
    comparison: str  # unique id of the comparison it belongs to
    method: str
    config: str  # the configuration as published / run (LoRA r=8...)
    value: float  # score over the comparison's reference score (own runs: full FT's mean)
    score: float  # the raw score, in the metric's points (for regret)
    metric: str
    kind: str  # classification, multiple_choice, summarization, translation, generation
    architecture: str
    log_params: float | None
    log_examples: float | None
    log_steps: float | None
    cite: str
    hyperparameters: dict = field(default_factory=dict, hash=False, compare=False)
    runs: int = 1  # seeds averaged into this point (own runs)
    anchor: bool = False  # another source's figure quoted in this table: a reference here, not evidence


@dataclass
class PointSet:
    """Points from one or more sources, and how many rows or runs were left out of them, by reason."""

    points: list[Point]
    excluded: dict[str, int]  # reason -> rows/runs left out

    def sources(self) -> list[str]:
        return sorted({p.source for p in self.points})


def _log(x: float | int | None) -> float | None:
    return math.log10(x) if x and x > 0 else None


def _steps_of(length: str | None, examples: int | None) -> float | None:
    if not length:
        return None
    m = re.fullmatch(r"\s*([\d.]+)\s*(steps?|epochs?)\s*", length)
    if not m:
        return None
    n = float(m.group(1))
    if m.group(2).startswith("step"):
        return n
    return n * examples / ASSUMED_BATCH if examples else None


# A source's note saying a row copies another corpus source's cell (checked cell for cell by whoever added it):
# that row is never evidence of its own, even where the two sources name the task differently.
COPY_MARKERS = ("identical to adalora", "identical to boft", "same measurements quoted")
# Any note saying the figure is someone else's measurement: that copy is not the one kept as evidence, and one
# equal figure is enough to call its row a copy (`_quoted_copies`).
QUOTE_MARKERS = (*COPY_MARKERS, "numbers from prior work", "quoted", "taken from prior work", "not a new measurement",
                 "copied from", "baseline taken from")


def _year(source_id: str) -> int:
    """The publication year in a source id (`zhang2023_adalora`); a repository without one sorts last."""
    found = re.search(r"(19|20)\d\d", source_id)
    return int(found.group(0)) if found else 9999


def _note_says(row: PublishedRow, markers: tuple[str, ...]) -> bool:
    note = (row.note or "").lower()
    return any(marker in note for marker in markers)


def corpus_points(rows: list[PublishedRow] | None = None) -> PointSet:
    rows = load_corpus() if rows is None else rows
    excluded: dict[str, int] = defaultdict(int)
    kept: list[PublishedRow] = []
    for row in rows:
        reason = (FORGETTING_SOURCES.get(row.source_id) or PROBE_TABLES.get((row.source_id, row.locator))
                  or ("no peftbench method" if not row.method else None)
                  or ("no reference score in its table" if not row.full_ft_score else None)
                  or ("lower-is-better metric" if row.metric in LOWER_IS_BETTER else None)
                  or ("an average of the source's own rows" if row.metric.endswith("_avg") else None))
        if reason:
            excluded[reason] += 1
        else:
            kept.append(row)
    anchors = _quoted_copies(kept)
    if anchors:
        excluded["a figure another source measured (counted once; kept as its table's reference)"] += len(anchors)
    points = []
    for (comparison, metric), group in _comparisons(kept).items():
        excluded["another metric of the same comparison (one metric each)"] += sum(r.metric != metric for r in group)
        chosen = [r for r in group if r.metric == metric]
        for row in chosen:
            assert row.method and row.full_ft_score  # rows without either were excluded above
            value = max(0.0, min(row.score / row.full_ft_score, 2.0))
            points.append(Point(
                source=row.source_id, comparison=comparison, method=row.method, config=row.method_published,
                value=value, score=row.score, metric=metric, kind=row.task_kind, architecture=row.architecture,
                log_params=_log(row.total_params), log_examples=_log(row.train_examples),
                log_steps=_log(_steps_of(row.training_length, row.train_examples)),
                cite=_cite(row, chosen, metric),
                hyperparameters=row.hyperparameters, anchor=id(row) in anchors))
    return PointSet(points, dict(excluded))


def _comparisons(rows: list[PublishedRow]) -> dict[tuple[str, str], list[PublishedRow]]:
    """(comparison id, its metric) -> the rows of one table block: one model, task and data size.

    A training length in a table is usually each method's own setting (T-Few trains full FT 300 steps and
    (IA)3 1,000 beside each other): it splits a block only where the block repeats one published
    configuration at several lengths, which makes length a condition of the table."""
    blocks: dict[tuple, list[PublishedRow]] = defaultdict(list)
    for row in rows:
        blocks[(row.source_id, row.locator, row.model, row.task, row.train_examples)].append(row)
    out: dict[tuple[str, str], list[PublishedRow]] = {}
    for key, block in blocks.items():
        lengths: dict[str, set[str | None]] = defaultdict(set)
        for row in block:
            lengths[row.method_published].add(row.training_length)
        by_length = any(len(v) > 1 for v in lengths.values())
        parts: dict[str | None, list[PublishedRow]] = defaultdict(list)
        for row in block:
            parts[row.training_length if by_length else None].append(row)
        for length, part in parts.items():
            metrics = {r.metric for r in part}
            metric = next((m for m in METRIC_PREFERENCE if m in metrics), sorted(metrics)[0])
            out_key = "|".join(str(k) for k in (*key, length)) + f"|{metric}"
            out[(out_key, metric)] = part
    return out


def _quoted_copies(rows: list[PublishedRow]) -> set[int]:
    """ids of the rows that copy a run another source printed. Each measurement is evidence once, in one
    source -- one that does not call it a quote, the earliest (a paper before its repository) -- or
    leave-one-source-out would test a source on its own numbers.

    Figures match on model, task, peftbench method, metric and score. A row of a table whose figures match
    another source's is a copy when its source calls it a quote, or when two or more of its figures match: one
    equal figure in an unmarked row is a coincidence (DoRA's LoRA r=64 and LLM-Adapters' LoRA on LLaMA-7B
    WinoGrande, both 78.8), and both stay evidence. A copied run is a copy in every metric it prints: it counts
    once whichever metric each table is read in. A row its source marks as a copy of another corpus source's
    cell (`COPY_MARKERS`) is never evidence; any other quote found nowhere else in the corpus stays evidence:
    it is counted once all the same."""
    def key(row: PublishedRow) -> tuple:
        # Not the published method name: a repository and its paper label one run differently ("FT*").
        return (re.sub(r"[^a-z0-9]", "", row.model.lower()), row.task.lower(), row.method, row.metric,
                round(row.score, 3))

    def table_row(row: PublishedRow) -> tuple:
        # Trainable parameters tell apart two rows of one table printed under one name (the LoRA paper's
        # AdapterD* at 0.3M and at 0.9M); within one source they are stated alike.
        return row.source_id, row.locator, key(row)[0], row.method_published, row.trainable_params

    owner: dict[tuple, PublishedRow] = {}
    for row in sorted(rows, key=lambda r: (_note_says(r, QUOTE_MARKERS), _year(r.source_id), r.source_id)):
        owner.setdefault(key(row), row)
    # Two equal scores inside one source are two runs (S11 of LoRA Learns Less: r=16 and r=256 both 0.502).
    elsewhere = [row for row in rows if owner[key(row)].source_id != row.source_id]
    matches: dict[tuple, int] = defaultdict(int)
    for row in elsewhere:
        matches[table_row(row)] += 1
    copied_runs = {(*table_row(row), row.task) for row in elsewhere
                   if matches[table_row(row)] >= 2 or _note_says(row, QUOTE_MARKERS)}
    return {id(row) for row in rows
            if (*table_row(row), row.task) in copied_runs or _note_says(row, COPY_MARKERS)}


def _cite(row: PublishedRow, table: list[PublishedRow], metric: str) -> str:
    """What the row shows: its score against the table's reference, or, for the reference method's own row
    (LoRA in a table without full FT), against the methods beside it — never "85.7 vs lora 85.7"."""
    where = f"{row.method_published} on {row.model}, {row.task}"
    if row.method != row.reference_method:
        against = f"vs {row.reference_method} {row.full_ft_score:g}"
    else:
        others = [r for r in table if r is not row and r.method != row.method]
        beside = ", ".join(f"{r.method_published} {r.score:g}" for r in others[:4])
        against = f"(the table's reference) beside {beside}" if beside else "(the table's reference)"
    return f"{where}: {row.score:g} {against} {metric} ({row.citation}, {row.locator})"


def cached_corpus_points() -> PointSet:
    """`corpus_points()` through the recommender's JSON cache, keyed by the corpus files' bytes: validating
    1,945 rows costs ~1-3 s on a busy CPU, reading the cached points ~0.1 s."""
    import dataclasses

    from peftbench.recommend.corpus import corpus_digest
    from peftbench.recommend.store import meaning_key, read_json, write_json

    key = f"{meaning_key('recommender')}:{corpus_digest()}"
    cached = read_json("corpus_points.json").get(key)
    if cached:
        return PointSet([Point(**p) for p in cached["points"]], cached["excluded"])
    ev = corpus_points()
    write_json("corpus_points.json", {key: {"points": [dataclasses.asdict(p) for p in ev.points],
                                           "excluded": ev.excluded}})
    return ev


def task_baselines() -> dict[str, dict]:
    """suite/task -> chance, majority share (eval split, as run) and eval size, for classification and MC.

    A shipped copy of `informativeness.suite_baselines` (the one computation): reading every suite's data
    costs seconds on each `recommend` call. `write_task_baselines()` rewrites it; a test checks it is current."""
    try:
        return json.loads(BASELINES_FILE.read_text())
    except (OSError, ValueError):
        return {}


def compute_task_baselines() -> dict[str, dict]:
    """`task_baselines()` computed afresh from the shipped suites' data."""
    from peftbench.informativeness import suite_baselines
    from peftbench.suites import available_suites

    return {f"{suite}/{task}": {k: v for k, v in facts.items() if k != "metric"}
            for suite in available_suites() for task, facts in suite_baselines(suite).items() if "chance" in facts}


def write_task_baselines() -> None:
    from peftbench.cache import write_json_atomic

    write_json_atomic(BASELINES_FILE, compute_task_baselines(), indent=1, sort_keys=True)


def _fine_kind(run: Run) -> str:
    if run.kind != "generation":
        return run.kind
    return run.suite if run.suite in GENERATION_KINDS else "generation"


def own_points(runs: list[Run], baselines: dict[str, dict] | None = None) -> PointSet:
    """Reference-suite runs as points: seeds averaged per configuration, over full FT's score; a task whose
    full FT is not clearly above chance / the majority class is left out."""
    baselines = task_baselines() if baselines is None else baselines
    excluded: dict[str, int] = defaultdict(int)
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.suite in NOT_EVIDENCE_SUITES:
            excluded[NOT_EVIDENCE_SUITES[run.suite]] += 1
        elif not run.informative:
            excluded[NON_INFORMATIVE] += 1
        else:
            by_task[run.task_key].append(run)
    points = []
    for key, task_runs in by_task.items():
        full = [r.score for r in task_runs if r.method == "full"]
        if not full:
            excluded["no full fine-tuning run on the task to compare with"] += len(task_runs)
            continue
        base = baselines.get(key) or {}
        floor = max(base.get("chance", 0.0), base.get("majority", 0.0)) if task_runs[0].kind != "generation" else 0.0
        ref = statistics.mean(full)
        n_eval = base.get("eval_examples") or 0
        if floor and n_eval:
            p = floor / 100
            se = 100 * math.sqrt(p * (1 - p) / (n_eval * len(full)))
            if ref - floor < MIN_Z_ABOVE_CHANCE * se:
                excluded["full FT indistinguishable from chance/majority on the task (binomial SE)"] += len(task_runs)
                continue
        if ref - floor <= 1e-9:  # floor >= 0, so this also keeps `score / ref` below defined
            excluded["full FT not above the baseline"] += len(task_runs)
            continue
        configs: dict[str, list[Run]] = defaultdict(list)
        for run in task_runs:
            configs[run.config].append(run)
        first = task_runs[0]
        for config, group in configs.items():
            score = statistics.mean(r.score for r in group)
            value = max(0.0, min(score / ref, 2.0))  # the corpus's scale (`corpus_points`)
            steps = group[0].steps or None
            points.append(Point(
                source=f"own:{first.suite}", comparison=f"own|{key}|{first.model}", method=group[0].method,
                config=config, value=value, score=score, metric="score", kind=_fine_kind(first),
                architecture=first.architecture, log_params=_log(first.total_params),
                log_examples=_log(first.train_examples), log_steps=_log(steps),
                cite=f"peftbench {key} ({first.model}, {first.train_examples} examples, {steps or '?'} steps): "
                     + (f"{config} {score:.1f} vs full {ref:.1f}" if group[0].method != "full" else
                        f"full {score:.1f} beside " + ", ".join(
                            f"{c} {statistics.mean(r.score for r in g):.1f}"
                            for c, g in list(configs.items())[:6] if g[0].method != "full"))
                     + f", baseline {floor:.1f} over {len(group)} seed(s)",
                runs=len(group)))
    return PointSet(points, dict(excluded))


def merge(*parts: PointSet) -> PointSet:
    excluded: dict[str, int] = defaultdict(int)
    for part in parts:
        for k, v in part.excluded.items():
            excluded[k] += v
    return PointSet([p for part in parts for p in part.points], dict(excluded))
