"""Multiple choice (MMLU style): the model reads the question and lettered options and answers a letter.

Training uses the LM loss on the answer letter; evaluation compares the next-token logits of the letters
at the end of the prompt, as lm-evaluation-harness scores MMLU, so no free-form generation is parsed.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any

import torch

from peftbench.tasks.base import Evaluation, PreparedTask, batches, pad_collate

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from peftbench.suites import TaskSpec


def _answer_index(value: Any, n_choices: int) -> int:
    if isinstance(value, str) and value.strip().upper() in string.ascii_uppercase[:n_choices]:
        return string.ascii_uppercase.index(value.strip().upper())
    return int(value)


class MultipleChoice:
    name = "multiple_choice"

    def num_labels(self, task: TaskSpec, train: Dataset) -> None:
        return None

    def _rows(self, task: Any, tokenizer: Any, dataset: Any) -> list[dict[str, Any]]:
        rows = []
        for row in dataset:
            choices = list(row[task.fields["choices"]])
            values = {"question": row[task.fields["question"]], "choices": choices}
            answer = _answer_index(row[task.fields["answer"]], len(choices))
            rows.append({"prompt": task.prompt.format(**values), "answer": answer, "n_choices": len(choices)})
        return rows

    def prepare(self, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, train: Dataset,
                eval_: Dataset) -> PreparedTask:
        tokenizer.truncation_side = "left"  # long questions lose their start, never the "Answer:" cue
        features = []
        for row in self._rows(task, tokenizer, train):
            prompt_ids = tokenizer(row["prompt"], truncation=True, max_length=task.max_length - 1)["input_ids"]
            letter = tokenizer(" " + string.ascii_uppercase[row["answer"]], add_special_tokens=False)["input_ids"]
            features.append({"input_ids": prompt_ids + letter,
                             "attention_mask": [1] * (len(prompt_ids) + len(letter)),
                             "labels": [-100] * len(prompt_ids) + letter})
        eval_rows = self._rows(task, tokenizer, eval_)
        mean_input = sum(len(f["input_ids"]) for f in features) / len(features)
        return PreparedTask(features, eval_rows, pad_collate(tokenizer), None, [], mean_input, 1.0)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, task: TaskSpec,
                 prepared: PreparedTask, batch_size: int) -> Evaluation:
        model.eval()
        rows: list[float] = []
        for chunk in batches(prepared.eval_rows, batch_size):
            batch = tokenizer([r["prompt"] for r in chunk], return_tensors="pt", padding=True,
                              truncation=True, max_length=task.max_length - 1)
            logits = model(**batch).logits[:, -1, :]  # left padding: the last position is the prompt's end
            for row, row_logits in zip(chunk, logits, strict=True):
                letters = [tokenizer(" " + c, add_special_tokens=False)["input_ids"][0]
                           for c in string.ascii_uppercase[: row["n_choices"]]]
                rows.append(100.0 if int(row_logits[letters].argmax()) == row["answer"] else 0.0)
        return Evaluation({"accuracy": sum(rows) / len(rows)}, "accuracy", rows)
