"""The closed vocabularies every module shares, each written once: task kinds, architectures, method families.

Torch-free, so that the CLI, the recommender and the estimator's cold path can import them. The members
are `str` enums: they compare equal to the strings in suite YAML, run records and JSON caches.
"""

from __future__ import annotations

from enum import Enum


class TaskKindName(str, Enum):
    """What a task asks of the model; a suite's `kind:` and every record's `task_kind`."""

    CLASSIFICATION = "classification"
    GENERATION = "generation"
    MULTIPLE_CHOICE = "multiple_choice"

    def __str__(self) -> str:
        return self.value


class Architecture(str, Enum):
    ENCODER = "encoder"
    DECODER = "decoder"
    ENCODER_DECODER = "encoder-decoder"

    def __str__(self) -> str:
        return self.value


class Family(str, Enum):
    """The PEFT families (plus full fine-tuning) a method belongs to."""

    FULL = "full"
    REPARAMETERIZATION = "reparameterization"
    ADAPTER = "adapter"
    SELECTIVE = "selective"
    SOFT_PROMPT = "soft_prompt"

    def __str__(self) -> str:
        return self.value


TASK_KIND_NAMES: tuple[str, ...] = tuple(k.value for k in TaskKindName)
ARCHITECTURES: tuple[str, ...] = tuple(a.value for a in Architecture)
FAMILIES: tuple[str, ...] = tuple(f.value for f in Family)
# What `recommend --task` accepts as a kind, and the task kind each answers as.
KIND_ALIASES: dict[str, str] = {
    "classification": "classification", "summarization": "generation", "translation": "generation",
    "generation": "generation", "multiple-choice": "multiple_choice", "multiple_choice": "multiple_choice"}
# How a run spreads over several GPUs, and what each strategy can move to CPU memory (FSDP's CPU offload moves
# parameters, gradients and optimizer states together; ZeRO-2 shards no parameters to offload).
STRATEGIES: tuple[str, ...] = ("ddp", "fsdp", "zero2", "zero3")
OFFLOADS: tuple[str, ...] = ("none", "optimizer", "params")
VALID_OFFLOADS: dict[str, tuple[str, ...]] = {"ddp": ("none",), "fsdp": ("none", "params"),
                                              "zero2": ("none", "optimizer"), "zero3": OFFLOADS}
