"""What fine-tuning costs the base model's general abilities, from the corpus: a cost beside GPU-hours.

Tables that score a fine-tuned model on tasks *outside* its training domain (the corpus's `forgetting_avg`
metric: source-domain benchmarks after training on a target domain) are not quality evidence (`points` excludes
them) but are evidence of forgetting. Where such a table scores full fine-tuning beside another method in the
same setting, the difference says how much more general ability full fine-tuning gave up. Only fine-tuning on
examples counts (a table with a training-set size): continued pre-training on billions of tokens is another
regime than the question a user asks before a fine-tuning project.

Today one source has such tables (Biderman et al. 2024: Llama-2-7B, LoRA at r=16/64/256 beside full fine-tuning,
after each of several epochs of instruction fine-tuning). The answer quotes the gap as measured, with its range and
locators, and it weighs nothing in the decision: one source on one model is a cost to know, not a rule.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

FORGETTING_METRIC = "forgetting_avg"


@dataclass(frozen=True)
class ForgettingGap:
    """How much more of the source-domain average full fine-tuning lost than `method`, in points (x100 where the
    table prints fractions), over `settings` paired (table, training length) cells of `sources`."""

    method: str
    mean_points: float
    low_points: float
    high_points: float
    settings: int
    sources: tuple[str, ...]
    models: tuple[str, ...]
    locators: tuple[str, ...]
    citation: str

    def describe(self, for_method: str) -> str:
        where = (f"{', '.join(self.models)}; {self.citation}, {', '.join(self.locators)}: {self.settings} paired "
                 f"settings, range {self.low_points:+.1f} to {self.high_points:+.1f}")
        if for_method == "full":
            return (f"forgetting: full fine-tuning kept {self.mean_points:.1f} points less of the base model's "
                    f"general abilities (source-domain benchmarks after fine-tuning) than {self.method} ({where}); "
                    f"a cost the quality prediction does not include")
        measured = "" if for_method == self.method else f" ({self.method}'s measurement: the same adapters)"
        return (f"forgetting: {for_method} kept {self.mean_points:.1f} points more of the base model's general "
                f"abilities than full fine-tuning{measured} ({where})")


def forgetting_gaps(rows: Iterable[Any]) -> dict[str, ForgettingGap]:
    """method -> its gap to full fine-tuning, from corpus rows (`corpus.PublishedRow`)."""
    cells: dict[tuple, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.metric != FORGETTING_METRIC or not row.method or not row.train_examples:
            continue
        cells[(row.source_id, row.locator, row.model, row.task, row.training_length)][row.method].append(row)
    diffs: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for by_method in cells.values():
        if len(by_method.get("full", [])) != 1:
            continue
        full = by_method["full"][0]
        scale = 100.0 if max(abs(r.score) for rs in by_method.values() for r in rs) <= 1.0 else 1.0
        for method, rows_of in by_method.items():
            if method != "full":
                for row in rows_of:  # each configuration (LoRA's ranks) is its own paired measurement
                    diffs[method].append((scale * (row.score - full.score), row))
    out = {}
    for method, pairs in diffs.items():
        values = [d for d, _ in pairs]
        used = [r for _, r in pairs]
        out[method] = ForgettingGap(
            method=method, mean_points=round(statistics.mean(values), 2), low_points=round(min(values), 2),
            high_points=round(max(values), 2), settings=len(values),
            sources=tuple(sorted({r.source_id for r in used})), models=tuple(sorted({r.model for r in used})),
            locators=tuple(sorted({r.locator for r in used}, key=lambda s: (len(s), s))),
            citation="; ".join(sorted({r.citation.split(",")[0] + "," + r.citation.split(",")[1] for r in used})))
    return out


def cached_forgetting_gaps() -> dict[str, ForgettingGap]:
    """`forgetting_gaps` of the corpus through the recommender's JSON cache, keyed like the corpus points (the
    recommender's version and the corpus files' bytes): validating the corpus costs seconds on a cold call."""
    from peftbench.recommend.corpus import corpus_digest, load_corpus
    from peftbench.recommend.store import meaning_key, read_json, write_json

    key = f"{meaning_key('recommender')}:{corpus_digest()}"
    cached = read_json("forgetting.json").get(key)
    if cached is not None:
        return {m: ForgettingGap(**{**g, "sources": tuple(g["sources"]), "models": tuple(g["models"]),
                                    "locators": tuple(g["locators"])}) for m, g in cached.items()}
    gaps = forgetting_gaps(load_corpus())
    write_json("forgetting.json", {key: {m: asdict(g) for m, g in gaps.items()}})
    return gaps


def forgetting_reasons(methods: Iterable[str], gaps: dict[str, ForgettingGap],
                       proxies: Mapping[str, str] | None = None) -> dict[str, str]:
    """method -> the forgetting line its answer carries: full fine-tuning's against the method with the most
    paired settings; each measured method's (or its proxy's: QLoRA's is LoRA's) against full fine-tuning."""
    proxies = proxies or {}
    methods = list(methods)
    out = {}
    if "full" in methods and gaps:
        widest = max(gaps.values(), key=lambda g: (g.settings, g.method))
        out["full"] = widest.describe("full")
    for method in methods:
        gap = gaps.get(proxies.get(method, method))
        if method != "full" and gap is not None:
            out[method] = gap.describe(method)
    return out
