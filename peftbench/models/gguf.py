"""One-time conversion of a packaged GGUF checkpoint into an ordinary transformers directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def convert_gguf(gguf_file: Path, target: Path) -> Path:
    """De-quantise `gguf_file` to an fp32 safetensors model in `target` (idempotent, atomic).

    transformers loads GGUF by de-quantising, but leaves the model flagged as quantised, which blocks
    training and `save_pretrained`; clearing the flag and saving once gives a plain checkpoint that later
    runs load in under a second. The directory is swapped in with one rename, so concurrent runs or a
    kill mid-conversion never leave a half-written model behind.
    """
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                     dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model.hf_quantizer = None  # type: ignore[assignment]  # undeclared: nn.Module types it as Tensor | Module
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
