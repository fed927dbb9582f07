"""How each method's result is served at inference: can it merge into the base weights, and what does it add.

One home for the facts that the inference measurement (`peftbench.inference`), the inference estimate
(`peftbench.estimate.inference`) and the deploy weighting (`peftbench.recommend.deploy`) all use.
"""

from __future__ import annotations

from dataclasses import dataclass

# Methods peft can fold into the base weights with `merge_and_unload`: each learns a weight delta (or a
# rescaling, a rotation, a replaced norm) that is itself linear in the base weight, so after merging the
# served model is the base architecture with new weights and costs exactly what the base costs.
MERGEABLE = frozenset({"lora", "dora", "rslora", "qlora", "adalora", "loha", "lokr", "vera", "oft", "boft", "ia3",
                       "ln_tuning"})
SOFT_PROMPTS = frozenset({"prompt_tuning", "p_tuning", "prefix_tuning"})
# Methods that rewrite the base weights themselves: the trained model *is* the served model. Full
# fine-tuning also leaves no small artifact: N tasks served need N full copies of the model.
IN_PLACE = frozenset({"full", "bitfit"})

_WHY_NOT = {
    "prompt_tuning": "its virtual tokens are extra sequence positions, not a weight delta: every request carries "
                     "them through every layer (longer prefill, a longer KV cache)",
    "p_tuning": "its virtual tokens (from the prompt encoder, which can be cached) are extra sequence positions, not "
                "a weight delta: every request carries them through every layer",
    "prefix_tuning": "its learned key/value prefixes live in every layer's KV cache, not in the weights: every "
                     "request attends over them",
    "adapter": "a bottleneck adapter has a non-linearity between its down- and up-projection, so it cannot fold "
               "into the surrounding linear weights: its layers run on every token",
    "full": "nothing to merge: the method rewrites the base weights, so the tuned model has the base's cost",
    "bitfit": "nothing to merge: the method rewrites the base model's own biases, so the tuned model has the "
              "base's cost",
}


@dataclass(frozen=True)
class Serving:
    """How a method is served: `mergeable` (peft `merge_and_unload`), and why not where it is not."""

    method: str
    mergeable: bool
    reason: str  # why it cannot merge ('' where it can)
    extra_positions: bool  # the method lengthens every sequence (soft prompts)
    separate_artifact: bool  # many tasks can share one base, each with a small artifact (not full)
    in_place: bool  # the method rewrites base weights: the tuned model is served as it is (full, bitfit)


def serving(method: str) -> Serving:
    """The serving facts for a method name (unknown methods: treated as unmergeable, separate artifact)."""
    if method in MERGEABLE:
        return Serving(method, True, "", False, True, False)
    reason = _WHY_NOT.get(method, f"{method}: peftbench does not know how to merge it")
    return Serving(method, False, reason, method in SOFT_PROMPTS, method != "full", method in IN_PLACE)
