"""Sequence classification: a text in, one of K labels out; accuracy and macro-F1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from peftbench.errors import UserError
from peftbench.metrics import classification_metrics, correct_rows
from peftbench.tasks.base import Evaluation, PreparedTask, batches, pad_collate

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from peftbench.suites import TaskSpec


class Classification:
    name = "classification"

    def label_names(self, task: Any, train: Any) -> list[str]:
        if task.labels:
            return list(task.labels)
        return sorted({str(v) for v in train[task.fields["label"]]})

    def num_labels(self, task: TaskSpec, train: Dataset) -> int:
        return len(self.label_names(task, train))

    def prepare(self, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, train: Dataset,
                eval_: Dataset) -> PreparedTask:
        names = self.label_names(task, train)
        index = {name: i for i, name in enumerate(names)}

        def encode(dataset: Any, split: str) -> list[dict[str, Any]]:
            texts = [str(t) for t in dataset[task.fields["text"]]]
            labels = [str(v) for v in dataset[task.fields["label"]]]
            unknown = sorted(set(labels) - set(index))
            if unknown:
                raise UserError(f"task '{task.name}': {split} labels {unknown[:5]} are not in the label set {names}")
            encoded = tokenizer(texts, truncation=True, max_length=task.max_length)
            return [{"input_ids": ids, "attention_mask": mask, "labels": index[label]}
                    for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], labels, strict=True)]

        train_features = encode(train, "train")
        eval_features = encode(eval_, "eval")
        mean_len = sum(len(f["input_ids"]) for f in train_features) / len(train_features)
        return PreparedTask(train_features, eval_features, pad_collate(tokenizer), len(names), names, mean_len, 1.0)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, task: TaskSpec,
                 prepared: PreparedTask, batch_size: int) -> Evaluation:
        model.eval()
        predictions: list[int] = []
        references: list[int] = []
        for chunk in batches(prepared.eval_rows, batch_size):
            batch = prepared.collate(chunk)
            references.extend(batch.pop("labels").tolist())
            predictions.extend(model(**batch).logits.argmax(-1).tolist())
        return Evaluation(classification_metrics(predictions, references, prepared.num_labels or 0, task.metrics),
                          "accuracy", correct_rows(predictions, references))
