"""Every fine-tuning method peftbench knows, declared as data: name, family, defaults, the peft config it goes
through, its revisions. The one list of methods.

Torch-free (peft's config split: what a method is, apart from the layers that apply it), so that the CLI refuses
a mistyped `--method`, the recommender reads families and defaults, and the published corpus checks its method
column without importing torch. `peftbench.methods` registers one `Method` per declaration, adding the torch
side (how to wrap a model), and refuses a registration that has no declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from peftbench.vocabulary import ARCHITECTURES, Family


@dataclass(frozen=True)
class MethodDeclaration:
    """What one method is. `version` and `applicability` are its revisions (see `peftbench.methods.Method`)."""

    name: str
    family: str
    description: str
    defaults: Mapping[str, Any]
    peft_config: str | None = None  # the peft config class whose fields are valid overrides; None: not peft's
    architectures: tuple[str, ...] = ARCHITECTURES
    quantize_4bit: bool = False  # the base model is loaded in 4-bit (QLoRA)
    # Bump when a change alters what the method trains or how (its applier, its layer code): shipped shape
    # fits of this method are then rebuilt (`python -m peftbench.estimate.ship_fits --methods NAME`).
    version: int = 1
    # Bump when the method comes to apply where an earlier revision declined (a run recorded `skipped`):
    # resuming a suite reruns the skips recorded under an older revision, and keeps the rest.
    applicability: int = 1
    extra_keys: tuple[str, ...] = field(default=())

    @property
    def uses_peft(self) -> bool:
        return self.peft_config is not None


_LORA: dict[str, Any] = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": None,
                         "learning_rate": 5e-4}
_R = Family.REPARAMETERIZATION.value

# Learning rates: PEFT methods train few parameters from a small or zero init and need step sizes one to three
# orders of magnitude above full fine-tuning (LoRA paper App. D; "LoRA Without Regret", 2025: ~10x; prompt tuning
# 0.3 with Adafactor in Lester et al. 2021). These suit the short budgets of peftbench's CPU suites; override any
# of them with `methods.NAME.KEY=VALUE`.
_DECLARED = (
    MethodDeclaration("full", Family.FULL.value, "Update every parameter", {"learning_rate": 5e-5}),
    MethodDeclaration("bitfit", Family.SELECTIVE.value, "Train only the bias terms (Ben Zaken et al. 2022)",
                      {"learning_rate": 1e-3}),
    MethodDeclaration("adapter", Family.ADAPTER.value, "Houlsby bottleneck adapters after each attention and "
                      "feed-forward block (Houlsby et al. 2019)",
                      {"reduction_factor": 16, "target_modules": None, "learning_rate": 1e-3}),
    MethodDeclaration("lora", _R, "Low-rank update B·A on attention projections (Hu et al. 2021)", _LORA,
                      "LoraConfig"),
    MethodDeclaration("dora", _R, "LoRA with a learned magnitude vector (Liu et al. 2024)",
                      {**_LORA, "use_dora": True}, "LoraConfig"),
    MethodDeclaration("rslora", _R, "LoRA scaled by alpha/sqrt(r), stable at high rank (Kalajdzievski 2023)",
                      {**_LORA, "use_rslora": True}, "LoraConfig"),
    MethodDeclaration("qlora", _R, "LoRA on a 4-bit NF4-quantised frozen base (Dettmers et al. 2023)",
                      {**_LORA, "learning_rate": 2e-4}, "LoraConfig", quantize_4bit=True),
    MethodDeclaration("adalora", _R, "LoRA with SVD-based adaptive rank allocation (Zhang et al. 2023)",
                      {"init_r": 12, "target_r": 8, "lora_alpha": 16, "target_modules": None, "total_step": None,
                       "learning_rate": 5e-4}, "AdaLoraConfig"),
    MethodDeclaration("loha", _R, "Low-rank Hadamard product update (Hyeon-Woo et al. 2022)",
                      {"r": 8, "alpha": 16, "target_modules": None, "learning_rate": 5e-4}, "LoHaConfig"),
    MethodDeclaration("lokr", _R, "Low-rank Kronecker product update (LyCORIS)",
                      {"r": 8, "alpha": 16, "target_modules": None, "learning_rate": 5e-4}, "LoKrConfig"),
    MethodDeclaration("vera", _R, "Shared frozen random low-rank pair, trained scaling vectors "
                      "(Kopiczko et al. 2024)", {"r": 256, "target_modules": None, "learning_rate": 5e-3},
                      "VeraConfig"),
    MethodDeclaration("oft", _R, "Orthogonal fine-tuning: block-diagonal rotation of weights (Qiu et al. 2023)",
                      {"r": 0, "oft_block_size": 32, "target_modules": None, "learning_rate": 5e-4}, "OFTConfig"),
    MethodDeclaration("boft", _R, "Butterfly-factorised orthogonal fine-tuning (Liu et al. 2024)",
                      {"boft_block_size": 4, "boft_n_butterfly_factor": 1, "target_modules": None,
                       "learning_rate": 5e-4}, "BOFTConfig"),
    MethodDeclaration("ia3", Family.ADAPTER.value, "Learned rescaling of keys, values and FFN activations "
                      "(Liu et al. 2022)", {"target_modules": None, "feedforward_modules": None,
                                            "learning_rate": 3e-3}, "IA3Config"),
    MethodDeclaration("ln_tuning", Family.SELECTIVE.value, "Tune only the LayerNorm/RMSNorm parameters "
                      "(Zhao et al. 2023)", {"target_modules": None, "learning_rate": 1e-3}, "LNTuningConfig"),
    MethodDeclaration("prompt_tuning", Family.SOFT_PROMPT.value, "Learned virtual tokens prepended to the input "
                      "embeddings (Lester et al. 2021)", {"num_virtual_tokens": 20, "learning_rate": 3e-2},
                      "PromptTuningConfig"),
    MethodDeclaration("prefix_tuning", Family.SOFT_PROMPT.value, "Learned key/value prefixes at every layer "
                      "(Li & Liang 2021)", {"num_virtual_tokens": 20, "learning_rate": 5e-3}, "PrefixTuningConfig",
                      architectures=("decoder", "encoder-decoder"), applicability=2),  # 2: decodes on causal LMs
    MethodDeclaration("p_tuning", Family.SOFT_PROMPT.value, "Virtual tokens produced by a small MLP prompt "
                      "encoder (Liu et al. 2021)",
                      {"num_virtual_tokens": 20, "encoder_hidden_size": 128, "learning_rate": 5e-3},
                      "PromptEncoderConfig"),
)

DECLARATIONS: Mapping[str, MethodDeclaration] = MappingProxyType({d.name: d for d in _DECLARED})
METHOD_NAMES: tuple[str, ...] = tuple(sorted(DECLARATIONS))

# Methods whose quality the recommender reads from another's evidence: QLoRA trains LoRA's adapters (same
# adapters; Dettmers et al. 2023: 16-bit parity). Its cost and memory are its own.
PROXIES: Mapping[str, str] = MappingProxyType({"qlora": "lora"})
# Methods whose `r` is the rank of a low-rank update, which sweeps compare across ranks (VeRA's shared pair and
# OFT's block count are not such a rank).
RANKED: tuple[str, ...] = ("lora", "qlora", "dora", "rslora", "loha", "lokr")


def declaration(name: str) -> MethodDeclaration:
    """The declaration of `name`; KeyError for a name no method has (the CLI checks names first)."""
    return DECLARATIONS[name]


def catalogue() -> dict[str, dict[str, Any]]:
    """name -> family, architectures, defaults, description: the JSON-able view the recommender reads."""
    return {d.name: {"family": d.family, "architectures": list(d.architectures), "defaults": dict(d.defaults),
                     "description": d.description} for d in _DECLARED}
