"""The pilot's suite: the user's rows split into training and test rows by content hash, written beside a normal
suite YAML in the results folder, so that `run`, `results` and `report` work on the pilot afterwards.

The split is by each row's content (a hash of the columns the task reads), not by position: the same file gives
the same split on every machine and on a rerun, and a row never moves between splits when rows are added
elsewhere in the file. The harness carves its learning-rate validation split out of the training rows the same
way (`runs.tuning`), so test rows are never seen while choosing a rate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.pilot.request import PilotRequest

TEST_FRACTION, MIN_TEST, MAX_TEST = 0.2, 16, 500  # a test split big enough to tell methods apart, not more
PROMPTS = {"summarization": "Text:\n{source}\nSummary:", "translation": "Translate:\n{source}\nTranslation:",
           "generation": "{source}\nAnswer:", "qa": "Question:\n{source}\nAnswer:"}
METRICS = {"classification": ["accuracy", "macro_f1"], "generation": ["rouge1", "rouge2", "rougeL", "bleu", "chrf"]}


@dataclass(frozen=True)
class PilotData:
    """The split, as written: where, how many rows, and the lengths the suite sizes itself by."""

    folder: Path
    train_rows: int
    test_rows: int
    labels: list[str]
    max_length: int
    max_target_length: int
    fingerprint: str  # of the rows, in split order: a changed file is a different pilot


def _hash(row: dict[str, Any], columns: list[str]) -> str:
    return hashlib.sha256(json.dumps([str(row[c]) for c in columns]).encode()).hexdigest()


def split_rows(data: Any, request: PilotRequest) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, test) rows renamed to the task's roles, test = the rows whose content hash sorts last."""
    columns = list(request.columns.values())
    rows = sorted(({role: str(row[col]) for role, col in request.columns.items()} | {"_h": _hash(row, columns)}
                   for row in data), key=lambda r: r["_h"])
    test = min(MAX_TEST, max(MIN_TEST, round(TEST_FRACTION * len(rows))))
    strip = [{k: v for k, v in r.items() if k != "_h"} for r in rows]
    return strip[:-test], strip[-test:]


def measure_split(data: Any, request: PilotRequest, tokenizer: Any,
                  max_length: int = 512) -> tuple[PilotData, list, list]:
    """The split and the lengths the suite is sized by (the model's tokenizer, inputs cut at `max_length`),
    nothing written yet."""
    train, test = split_rows(data, request)
    inputs = [r["text" if request.kind == "classification" else "source"] for r in train]
    lengths = sorted(len(ids) for ids in tokenizer(inputs, add_special_tokens=False)["input_ids"])
    target_lengths = [0]
    if request.kind == "generation":
        target_lengths = sorted(len(ids) for ids in tokenizer([r["target"] for r in train],
                                                              add_special_tokens=False)["input_ids"])
    p95 = lambda xs: xs[int(0.95 * (len(xs) - 1))]  # noqa: E731
    labels = sorted({r["label"] for r in train + test}) if request.kind == "classification" else []
    digest = hashlib.sha256(json.dumps([train, test]).encode()).hexdigest()[:16]
    facts = PilotData(request.results / request.name / "data", len(train), len(test), labels,
                      min(max_length, p95(lengths) + 16), min(128, p95(target_lengths) + 4), digest)
    return facts, train, test


def write_split(facts: PilotData, train: list[dict[str, str]], test: list[dict[str, str]]) -> None:
    """train.jsonl and eval.jsonl under the pilot's folder (the harness's `source: local` files)."""
    facts.folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("eval", test)):
        (facts.folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def suite_document(request: PilotRequest, data: PilotData, methods: list[str], train: dict[str, Any]) -> dict:
    """The suite YAML's content: one task on the written split, the candidates, the planned training."""
    task: dict[str, Any] = {
        "name": request.name.removeprefix("pilot_") or "task",
        "description": f"{request.data.name} ({request.task}), split by content hash", "kind": request.kind,
        "model": request.model,
        "data": {"source": "local", "files": {"train": str((data.folder / "train.jsonl").resolve()),
                                              "eval": str((data.folder / "eval.jsonl").resolve())}},
        "fields": {role: role for role in request.columns}, "max_length": data.max_length,
        "metrics": METRICS[request.kind], "sizes": {"train": data.train_rows, "eval": data.test_rows}}
    if request.kind == "classification":
        task["labels"] = data.labels
    else:
        task["prompt"] = PROMPTS.get(request.task, PROMPTS["generation"])
        task["max_target_length"] = data.max_target_length
    return {"name": request.name, "description": f"peftbench pilot on {request.data.name}", "model": request.model,
            "methods": methods, "seeds": [0], "train": train, "tasks": [task]}


def write_suite(request: PilotRequest, document: dict[str, Any]) -> Path:
    import yaml

    path = request.results / request.name / "suite.yaml"
    path.write_text("# Written by peftbench pilot: rerun it with `peftbench run suite=" + str(path) + "`\n"
                    + yaml.safe_dump(document, sort_keys=False))
    return path
