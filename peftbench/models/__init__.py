"""Models: the packaged catalogue and loading any Hugging Face model id or local directory."""

from peftbench.models.catalogue import CATALOGUE, ModelSpec, architecture_family, resolve_model
from peftbench.models.loading import load_for_task, load_tokenizer

__all__ = ["CATALOGUE", "ModelSpec", "architecture_family", "load_for_task", "load_tokenizer", "resolve_model"]
