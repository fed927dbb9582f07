"""What fine-tuning made a decoder forget: its loss on general text that no task trains on, before and after.

The sample is the first `sequences` articles of `suites/data/general_text` (ABC news articles from gensim's
test data; card in suites/DATA.md), each cut to its first `tokens` tokens. The figure is the change in mean
cross-entropy (nats per predicted token) and in perplexity, tuned minus base, on exactly the same tokens,
as peft's method-comparison benchmark reports forgetting beside accuracy. A positive change means the
model got worse at general text. The per-sequence differences give a standard error: the two models read
the same tokens, so the paired difference is much tighter than either loss.

The base model's losses depend only on the model, dtype, sample and library versions: they are cached
(`cache_root()/forgetting/`), so a suite computes them once per model and each run pays one pass.
Soft-prompt methods are measured as served: their virtual tokens precede every sequence.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

# Bump when the sample or the way it is scored changes: cached base losses are keyed by it.
FORGETTING_VERSION = 1


@dataclass(frozen=True)
class ForgettingSettings:
    sequences: int = 8  # ~4 s of CPU per run for SmolLM2-135M; the paired standard error is recorded
    tokens: int = 128
    batch_size: int = 4


@dataclass
class Forgetting:
    sequences: int
    tokens_per_sequence: int
    base_nats: float  # mean cross-entropy per predicted token
    tuned_nats: float
    delta_nats: float  # tuned - base: > 0 means the model forgot
    delta_stderr: float  # standard error of the mean per-sequence difference
    base_perplexity: float
    tuned_perplexity: float
    perplexity_ratio: float
    sample: str  # the shipped file's sha256 prefix: which text was scored
    base_cached: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def applicable(architecture: str, task_kind: str) -> str | None:
    """Why forgetting cannot be measured for this run, or None when it can."""
    if architecture != "decoder":
        return f"measured for decoder language models only (this run's model is {architecture})"
    if task_kind == "classification":
        return "the classification run replaces the language-model head with a classifier: no text loss to score"
    return None


def sample_path() -> Path:
    from peftbench.suites import suites_dir

    relative = Path("data", "general_text", "eval.jsonl")
    shipped = suites_dir() / relative
    # A source checkout imported over another installed copy (PYTHONPATH) reads its own suites/ folder.
    checkout = Path(__file__).resolve().parents[1] / "suites" / relative
    return shipped if shipped.is_file() or not checkout.is_file() else checkout


def general_sequences(tokenizer: Any, settings: ForgettingSettings) -> tuple[list[list[int]], str]:
    """The first `sequences` articles with at least `tokens` tokens, each cut to `tokens`; and the sample id."""
    raw = sample_path().read_bytes()
    out: list[list[int]] = []
    for line in raw.decode("utf-8").splitlines():
        ids = tokenizer(json.loads(line)["text"], truncation=True, max_length=settings.tokens)["input_ids"]
        if len(ids) == settings.tokens:
            out.append(ids)
        if len(out) == settings.sequences:
            break
    return out, hashlib.sha256(raw).hexdigest()[:16]


@torch.no_grad()
def sequence_losses(model: Any, sequences: list[list[int]], batch_size: int, device: str = "cpu") -> list[float]:
    """Mean next-token cross-entropy (nats) of each sequence, all tokens real (no padding)."""
    model.eval()
    losses: list[float] = []
    for start in range(0, len(sequences), batch_size):
        ids = torch.tensor(sequences[start:start + batch_size], device=device)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        logits = logits[:, -ids.shape[1]:-1, :].float()  # soft prompts prepend positions: keep the real ones
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        losses.extend(nll.mean(dim=1).tolist())
    return losses


def measure_forgetting(model: Any, tokenizer: Any, *, load_base: Callable[[], Any], cache_key: dict[str, Any],
                       device: str = "cpu", settings: ForgettingSettings | None = None) -> Forgetting:
    """Score the tuned `model` and the base (cached by `cache_key` + sample, else `load_base()`) on the sample."""
    from peftbench.cache import cache_root, computed_with, key_of, read_json, write_json_atomic

    settings = settings or ForgettingSettings()
    sequences, sample = general_sequences(tokenizer, settings)
    if len(sequences) < 2:
        raise ValueError(f"the general-text sample gave {len(sequences)} sequences of {settings.tokens} tokens")
    path = cache_root() / "forgetting" / (key_of(FORGETTING_VERSION, cache_key, asdict(settings), sample) + ".json")
    cached = read_json(path)
    base = cached.get("losses") if isinstance(cached, dict) else None
    if not (isinstance(base, list) and len(base) == len(sequences)):
        base_model = load_base()
        base = sequence_losses(base_model, sequences, settings.batch_size, device)
        del base_model
        write_json_atomic(path, {"losses": base, "key": cache_key, "computed_with": computed_with()})
        cached = None
    tuned = sequence_losses(model, sequences, settings.batch_size, device)
    return summarise(base, tuned, settings.tokens, sample, cached is not None)


def summarise(base: list[float], tuned: list[float], tokens: int, sample: str, base_cached: bool) -> Forgetting:
    """The paired change in loss and perplexity from per-sequence losses."""
    n = len(base)
    diffs = [t - b for t, b in zip(tuned, base, strict=True)]
    mean_diff = sum(diffs) / n
    var = sum((d - mean_diff) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    base_nats, tuned_nats = sum(base) / n, sum(tuned) / n
    return Forgetting(sequences=n, tokens_per_sequence=tokens, base_nats=round(base_nats, 5),
                      tuned_nats=round(tuned_nats, 5), delta_nats=round(tuned_nats - base_nats, 5),
                      delta_stderr=round(math.sqrt(var / n), 5), base_perplexity=round(math.exp(base_nats), 4),
                      tuned_perplexity=round(math.exp(tuned_nats), 4),
                      perplexity_ratio=round(math.exp(tuned_nats - base_nats), 5), sample=sample,
                      base_cached=base_cached)
