"""Decoding with peft's prompt-learning methods on transformers 5, which renamed the KV-cache argument.

peft 0.21 predates the rename (`past_key_values` -> `cache`), so its `generate` for soft-prompt methods goes
wrong in two ways, each bridged here until peft follows: prompt and P-tuning re-inject their virtual tokens at
every step (`bridge_renamed_generation_cache`), and prefix tuning's key/value prefix is silently dropped, so a
trained prefix model decodes exactly like its base model (`bridge_prefix_generation`). Training is unaffected:
the model's forward still maps `past_key_values` to `cache`. Each bridge is a no-op on a transformers that still
takes `past_key_values`, and each is checked in tests against decoding without a cache.
"""

from __future__ import annotations

from typing import Any

import torch


def transformers_renamed_cache() -> bool:
    import inspect

    from transformers.generation.utils import GenerationMixin

    return "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters


def bridge_renamed_generation_cache(model: Any) -> None:  # a peft model, whose methods are replaced here
    """Let peft's prompt-learning `generate` see the KV cache under the name transformers now uses.

    peft 0.21 looks for the cache in `past_key_values`; transformers 5 passes it as `cache`. Finding none,
    peft re-injects the virtual tokens at every decoding step, so they pile up in the cache: outputs go
    wrong and decoding is ~5x slower (measured on SmolLM2: 20 virtual + 1 token per step instead of 1).
    This aliases the name both ways around peft's hook and does nothing where transformers still uses
    `past_key_values`. Outputs equal peft's uncached decoding (checked in tests). Prefix tuning, whose
    virtual key/values live in the cache itself, has its own bridge below.
    Remove this once peft follows the rename.
    """
    if not transformers_renamed_cache():
        return
    base_prepare = model.base_model_prepare_inputs_for_generation
    peft_prepare = model.prepare_inputs_for_generation

    def base_with_alias(*args: Any, **kwargs: Any) -> dict[str, Any]:
        inputs = base_prepare(*args, **kwargs)
        if inputs.get("past_key_values") is None:
            inputs["past_key_values"] = inputs.get("cache")
        return inputs

    def prepare(*args: Any, **kwargs: Any) -> dict[str, Any]:
        inputs = peft_prepare(*args, **kwargs)
        inputs.pop("past_key_values", None)  # the same object as inputs["cache"]
        return inputs

    model.base_model_prepare_inputs_for_generation = base_with_alias
    model.prepare_inputs_for_generation = prepare


def bridge_prefix_generation(model: Any) -> None:  # a peft model, whose `generate` is replaced here
    """Make a prefix-tuned causal LM's `generate` attend to its prefix.

    peft hands the prefix to `generate` as `past_key_values`, which transformers 5 no longer reads there, so
    decoding ignores it. Here the prefix goes in as what it is, an already-filled KV cache of
    `num_virtual_tokens` positions: the base model generates from `cache=<the prefix>` with that many filler
    ids in front of the prompt (positions the cache already holds, never embedded) and the mask extended over
    them, so every prompt and generated token attends to the prefix at positions after it, as in training.
    The filler columns are cut from the output. Greedy outputs equal decoding by repeated full forward passes
    through peft's training forward (tests/test_methods.py).
    """
    if not transformers_renamed_cache():
        return

    def generate(*args: Any, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        if args:
            input_ids, args = args[0], args[1:]
        if input_ids is None:
            raise ValueError("prefix-tuned generation needs input_ids")
        virtual = model.active_peft_config.num_virtual_tokens
        rows = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        filler = torch.zeros(rows, virtual, dtype=input_ids.dtype, device=input_ids.device)
        prefix_mask = torch.ones(rows, virtual, dtype=attention_mask.dtype, device=attention_mask.device)
        output = model.base_model.generate(*args, input_ids=torch.cat([filler, input_ids], dim=1),
                                           attention_mask=torch.cat([prefix_mask, attention_mask], dim=1),
                                           cache=model.get_prompt(rows), **kwargs)
        if isinstance(output, torch.Tensor):
            return output[:, virtual:]
        output.sequences = output.sequences[:, virtual:]  # return_dict_in_generate=True
        return output

    model.generate = generate
