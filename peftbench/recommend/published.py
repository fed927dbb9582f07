"""Published quality figures, kept apart from peftbench's own runs and always shown with their source.

Transcribed from the LoRA paper (Hu et al. 2021, arXiv 2106.09685), Tables 2 and 4. They
cover much larger models than peftbench can train on a CPU (125M-175B parameters), so they are the
evidence for large models, and a check on the own-results model for small ones. The peft repository's
`method_comparison/` results are deliberately absent: they are the held-out test of this recommender.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HU_T2 = "Hu et al. 2021 (LoRA, arXiv 2106.09685) Table 2, GLUE dev average"
HU_T4 = "Hu et al. 2021 (LoRA, arXiv 2106.09685) Table 4, GPT-3 175B"

# (model, total params, paper's method label, peftbench method, trainable params, score, benchmark, source)
# Adapter variants (AdapterD = AdapterDrop, AdapterP = Pfeiffer, AdapterH = Houlsby) all map to
# peftbench's bottleneck `adapter` (Houlsby placement); the label keeps the variant for the reader.
_ROWS: tuple[tuple[str, float, str, str, float, float, str, str], ...] = (
    ("RoBERTa-base", 125e6, "FT*", "full", 125.0e6, 86.4, "GLUE avg", HU_T2),
    ("RoBERTa-base", 125e6, "BitFit*", "bitfit", 0.1e6, 85.2, "GLUE avg", HU_T2),
    ("RoBERTa-base", 125e6, "AdapterD* 0.3M", "adapter", 0.3e6, 84.4, "GLUE avg", HU_T2),
    ("RoBERTa-base", 125e6, "AdapterD* 0.9M", "adapter", 0.9e6, 85.4, "GLUE avg", HU_T2),
    ("RoBERTa-base", 125e6, "LoRA", "lora", 0.3e6, 87.2, "GLUE avg", HU_T2),
    ("RoBERTa-large", 355e6, "FT*", "full", 355.0e6, 88.9, "GLUE avg", HU_T2),
    ("RoBERTa-large", 355e6, "LoRA", "lora", 0.8e6, 89.0, "GLUE avg", HU_T2),
    ("RoBERTa-large", 355e6, "AdapterP†", "adapter", 3.0e6, 88.4, "GLUE avg", HU_T2),
    ("RoBERTa-large", 355e6, "AdapterH†", "adapter", 6.0e6, 87.8, "GLUE avg", HU_T2),
    ("DeBERTa-XXL", 1.5e9, "FT*", "full", 1500.0e6, 91.1, "GLUE avg", HU_T2),
    ("DeBERTa-XXL", 1.5e9, "LoRA", "lora", 4.7e6, 91.3, "GLUE avg", HU_T2),
    # GPT-3 175B: WikiSQL acc, MNLI-m acc and SAMSum ROUGE-L, one row per benchmark.
    *((("GPT-3", 175e9, label, method, trainable, score, bench, HU_T4))
      for bench, scores in (("WikiSQL acc", (73.8, 71.3, 63.1, 70.1, 71.9, 73.2, 73.4, 74.0)),
                            ("MNLI-m acc", (89.5, 91.0, 88.6, 89.5, 89.8, 91.5, 91.7, 91.6)),
                            ("SAMSum ROUGE-L", (44.5, 43.5, 40.5, 43.5, 44.8, 45.1, 45.9, 45.1)))
      for (label, method, trainable), score in zip(
          (("FT", "full", 175255.8e6), ("BitFit", "bitfit", 14.2e6), ("PreEmbed (prompt)", "prompt_tuning", 3.2e6),
           ("PreLayer (prefix)", "prefix_tuning", 20.2e6), ("AdapterH 7.1M", "adapter", 7.1e6),
           ("AdapterH 40.1M", "adapter", 40.1e6), ("LoRA 4.7M", "lora", 4.7e6), ("LoRA 37.7M", "lora", 37.7e6)),
          scores, strict=True)),
)


@dataclass(frozen=True)
class PublishedPoint:
    model: str
    total_params: float
    label: str
    method: str
    trainable_params: float
    relative: float  # score / the same table's full fine-tuning score on the same benchmark
    benchmark: str
    source: str

    def cite(self) -> str:
        return (f"{self.label} on {self.model}: {self.relative:.1%} of full FT ({self.benchmark}; {self.source})")


def published_points() -> list[PublishedPoint]:
    full = {(m, b): s for m, _, _, meth, _, s, b, _ in _ROWS if meth == "full"}
    return [PublishedPoint(m, p, label, meth, tr, s / full[(m, b)], b, src)
            for m, p, label, meth, tr, s, b, src in _ROWS if meth != "full"]


@dataclass(frozen=True)
class PublishedEstimate:
    method: str
    relative: float
    low: float
    high: float
    points: tuple[PublishedPoint, ...]


# The kind of peftbench task each published benchmark resembles (GLUE and MNLI: classification;
# WikiSQL text-to-SQL and SAMSum summaries: generation).
BENCHMARK_KIND = {"GLUE avg": "classification", "MNLI-m acc": "classification", "WikiSQL acc": "generation",
                  "SAMSum ROUGE-L": "generation"}


def published_estimate(method: str, total_params: float, kind: str | None = None) -> PublishedEstimate | None:
    """Mean published ratio for `method`, weighting each point by closeness in log model size and
    doubling the weight of benchmarks of the query's kind.

    Delta Tuning (Ding et al. 2023) finds gaps between methods shrink as models grow, so a 175B figure
    says less about a 100M model than a RoBERTa-base one does; the weight halves per decade of size.
    """
    points = [p for p in published_points() if p.method == method]
    if not points:
        return None
    weights = [0.5 ** abs(math.log10(p.total_params) - math.log10(max(total_params, 1.0)))
               * (2.0 if BENCHMARK_KIND.get(p.benchmark) == kind else 1.0) for p in points]
    mean = sum(w * p.relative for w, p in zip(weights, points, strict=True)) / sum(weights)
    nearest = sorted(zip(weights, points, strict=True), key=lambda wp: -wp[0])
    return PublishedEstimate(method, mean, min(p.relative for p in points), max(p.relative for p in points),
                             tuple(p for _, p in nearest))
