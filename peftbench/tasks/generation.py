"""Generation with a reference text (summarisation, translation, title writing): ROUGE, BLEU, chrF.

Causal LMs train on `prompt + target + eos` with the loss on the target tokens only, and are evaluated
by greedy decoding from the prompt. The source text is truncated *inside* the prompt template so that
the template's closing cue ("Title:") is never cut off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from peftbench.metrics import text_metrics, text_rows
from peftbench.tasks.base import Evaluation, PreparedTask, batches, pad_collate

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from peftbench.suites import TaskSpec


def render_prompt(task: Any, row: dict[str, Any], tokenizer: Any, budget: int) -> str:
    """Fill the template, truncating the source field to `budget` tokens of the whole prompt."""
    source = str(row[task.fields["source"]]) if "source" in task.fields else ""
    values = {role: row[column] for role, column in task.fields.items()}
    overhead = len(tokenizer(task.prompt.format(**{**values, "source": ""}), add_special_tokens=False)["input_ids"])
    ids = tokenizer(source, add_special_tokens=False)["input_ids"]
    room = max(8, budget - overhead)
    if len(ids) > room:
        values["source"] = tokenizer.decode(ids[:room]).strip()
    return task.prompt.format(**values)


class Generation:
    name = "generation"

    def num_labels(self, task: TaskSpec, train: Dataset) -> None:
        return None

    def prepare(self, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, train: Dataset,
                eval_: Dataset) -> PreparedTask:
        budget = task.max_length - task.max_target_length
        eos = tokenizer.eos_token or ""
        features = []
        target_lengths = []
        for row in train:
            prompt_ids = tokenizer(render_prompt(task, row, tokenizer, budget))["input_ids"]
            target_ids = tokenizer(" " + str(row[task.fields["target"]]).strip() + eos,
                                   add_special_tokens=False)["input_ids"][: task.max_target_length]
            target_lengths.append(len(target_ids))
            features.append({"input_ids": prompt_ids + target_ids,
                             "attention_mask": [1] * (len(prompt_ids) + len(target_ids)),
                             "labels": [-100] * len(prompt_ids) + target_ids})
        eval_rows = [{"prompt": render_prompt(task, row, tokenizer, budget),
                      "reference": str(row[task.fields["target"]]).strip()} for row in eval_]
        mean_input = sum(len(f["input_ids"]) for f in features) / len(features) - sum(target_lengths) / len(features)
        return PreparedTask(features, eval_rows, pad_collate(tokenizer), None, [], mean_input,
                            sum(target_lengths) / len(target_lengths))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, task: TaskSpec,
                 prepared: PreparedTask, batch_size: int) -> Evaluation:
        model.eval()
        predictions: list[str] = []
        for chunk in batches(prepared.eval_rows, batch_size):
            batch = tokenizer([r["prompt"] for r in chunk], return_tensors="pt", padding=True)
            output = model.generate(**batch,  # type: ignore[operator]  # nn.Module types it as Tensor | Module
                                    max_new_tokens=task.max_target_length, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
            new_tokens = output[:, batch["input_ids"].shape[1]:]
            for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True):
                predictions.append(text.strip().split("\n")[0].strip())
        references = [r["reference"] for r in prepared.eval_rows]
        # The row metric is the recommender's primary one (ROUGE-L, else chrF for translation tasks).
        row_metric = "rougeL" if "rougeL" in task.metrics else "chrf" if "chrf" in task.metrics else task.metrics[0]
        return Evaluation(text_metrics(predictions, references, task.metrics), row_metric,
                          text_rows(predictions, references, row_metric))
