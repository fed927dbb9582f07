"""The closed vocabularies every module shares, each written once: task kinds, architectures, method families.

Torch-free, so that the CLI, the recommender and the estimator's cold path can import them. The members
are `str` enums: they compare equal to the strings in suite YAML, run records and JSON caches.
"""

from __future__ import annotations

from enum import Enum


class TaskKind(str, Enum):
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


TASK_KINDS: tuple[str, ...] = tuple(k.value for k in TaskKind)
ARCHITECTURES: tuple[str, ...] = tuple(a.value for a in Architecture)
FAMILIES: tuple[str, ...] = tuple(f.value for f in Family)


def check_task_kind(value: str) -> str:
    """`value` when it names a task kind, else a UserError naming the valid ones."""
    from peftbench.errors import UserError, did_you_mean

    if value not in TASK_KINDS:
        raise UserError(f"unknown task kind '{value}'{did_you_mean(value, TASK_KINDS)} "
                        f"(valid: {', '.join(TASK_KINDS)})")
    return value
