"""Task descriptors: numbers computed from a task's data that describe how hard and how big it is.

The recommender learns from these, and `peftbench recommend --data FILE` computes the same numbers for a
user's own dataset, so suites and users are described identically. Token counts use the task's model's
tokenizer.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from peftbench.suites import Suite, TaskSpec


def describe(task: TaskSpec, train: Any, eval_: Any, tokenizer: Any) -> dict[str, Any]:
    fields = task.fields
    if task.kind == "multiple_choice":
        inputs = [str(q) + " " + " ".join(map(str, c)) for q, c in zip(train[fields["question"]],
                                                                         train[fields["choices"]], strict=True)]
        outputs: list[str] = []
    elif task.kind == "generation":
        inputs, outputs = [str(x) for x in train[fields["source"]]], [str(x) for x in train[fields["target"]]]
    else:
        inputs, outputs = [str(x) for x in train[fields["text"]]], []
    input_lengths = [len(ids) for ids in tokenizer(inputs, add_special_tokens=False)["input_ids"]]
    descriptor: dict[str, Any] = {
        "task": task.name, "kind": task.kind, "train_examples": len(train), "eval_examples": len(eval_),
        "mean_input_tokens": round(sum(input_lengths) / len(input_lengths), 1),
        "p90_input_tokens": sorted(input_lengths)[int(0.9 * (len(input_lengths) - 1))],
        "truncated_fraction": round(sum(n > task.max_length for n in input_lengths) / len(input_lengths), 3),
        "type_token_ratio": round(_type_token_ratio(inputs), 4),
    }
    if outputs:
        output_lengths = [len(ids) for ids in tokenizer(outputs, add_special_tokens=False)["input_ids"]]
        descriptor["mean_output_tokens"] = round(sum(output_lengths) / len(output_lengths), 1)
        descriptor["output_input_ratio"] = round(descriptor["mean_output_tokens"] / descriptor["mean_input_tokens"], 3)
    if task.kind == "classification":
        counts = Counter(str(v) for v in train[fields["label"]])
        descriptor.update(num_labels=len(task.labels or counts), **_label_stats(counts))
    if task.kind == "multiple_choice":
        descriptor["num_choices"] = len(train[0][fields["choices"]])
    return descriptor


def _label_stats(counts: Counter) -> dict[str, float]:
    total = sum(counts.values())
    entropy = -sum(c / total * math.log(c / total) for c in counts.values())
    return {"label_entropy": round(entropy / math.log(len(counts)) if len(counts) > 1 else 0.0, 4),
            "majority_fraction": round(max(counts.values()) / total, 4)}


def _type_token_ratio(texts: list[str], sample_words: int = 20000) -> float:
    """Distinct words / words over a fixed-size word sample (so it does not fall with corpus size)."""
    words = " ".join(texts).lower().split()[:sample_words]
    return len(set(words)) / max(1, len(words))


def describe_suite(suite: Suite, scale: str = "default"):
    import pandas as pd

    from peftbench.data import load_task_data
    from peftbench.models.loading import tokenizer_for

    rows = []
    for task in suite.tasks:
        data = load_task_data(task, scale)
        tokenizer = tokenizer_for(task.model)
        rows.append({"model": task.model, **describe(task, data.train, data.eval, tokenizer)})
    return pd.DataFrame(rows)
