"""What every task kind provides to the run worker: tokenised training batches and an evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from peftbench.suites import TaskSpec


@dataclass
class PreparedTask:
    """Tokenised data ready for the training loop and the evaluation."""

    train_features: list[dict[str, list[int]]]
    eval_rows: list[dict[str, Any]]
    collate: Callable[[list[dict[str, list[int]]]], MutableMapping[str, torch.Tensor]]
    num_labels: int | None = None
    label_names: list[str] = field(default_factory=list)
    mean_input_tokens: float = 0.0
    mean_target_tokens: float = 0.0


@dataclass
class Evaluation:
    """A run's eval-split scores: the metrics, and the primary metric per eval row (`row_metric`), which lets a
    comparison of two runs on the same rows be bootstrapped (`peftbench pilot`)."""

    metrics: dict[str, float]
    row_metric: str
    row_scores: list[float]


class TaskKind(Protocol):
    name: str

    def num_labels(self, task: TaskSpec, train: Dataset) -> int | None: ...

    def prepare(self, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, train: Dataset,
                eval_: Dataset) -> PreparedTask: ...

    def evaluate(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, task: TaskSpec,
                 prepared: PreparedTask, batch_size: int) -> Evaluation: ...


def pad_collate(tokenizer: PreTrainedTokenizerBase
                ) -> Callable[[list[dict[str, list[int]]]], MutableMapping[str, torch.Tensor]]:
    """Pad input ids and attention masks with the tokenizer; pad `labels` lists with -100 on the same side."""

    def collate(features: list[dict[str, list[int]]]) -> MutableMapping[str, torch.Tensor]:  # a BatchEncoding
        labels = [f["labels"] for f in features] if "labels" in features[0] else None
        inputs = [{k: v for k, v in f.items() if k != "labels"} for f in features]
        batch = tokenizer.pad(inputs, return_tensors="pt")
        if labels is not None:
            if isinstance(labels[0], list):
                width = batch["input_ids"].shape[1]
                left = tokenizer.padding_side == "left"
                batch["labels"] = torch.tensor([([-100] * (width - len(lab)) + lab) if left
                                                else (lab + [-100] * (width - len(lab))) for lab in labels])
            else:
                batch["labels"] = torch.tensor(labels)
        return batch

    return collate


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def count_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())
