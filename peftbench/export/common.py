"""What every exporter shares: the files it returns, what a tool can express (refused with one line before
anything is written), and the data, YAML and multi-GPU notes every config carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.export.setting import (
    DATA_BUILDERS,
    DATA_PLACEHOLDER,
    GENERATION_COLUMNS,
    TOOL_METHODS,
    TOOL_NAMES,
    TOOLS,
    ExportSetting,
)


@dataclass
class Exported:
    files: dict[str, str]  # file name -> text
    command: str  # how the tool runs it
    notes: list[str] = field(default_factory=list)



def require_method(setting: ExportSetting, tool: str) -> None:
    if setting.method in TOOL_METHODS[tool]:
        return
    others = [t for t in TOOLS if t != tool and setting.method in TOOL_METHODS.get(t, peft_methods())]
    raise UserError(f"--export {tool}: {TOOL_NAMES[tool]} cannot express {setting.method} (it trains "
                    f"{', '.join(TOOL_METHODS[tool])}); " + (f"export it with --export {' or '.join(others)}"
                                                            if others else "no supported tool expresses it"))


def require_sft(setting: ExportSetting, tool: str) -> None:
    """TRL's `sft`, LLaMA-Factory and axolotl fine-tune causal LMs on text: a classifier head or a seq2seq model
    is outside what their configs say."""
    if setting.task_kind == "generation" and setting.architecture == "decoder":
        return
    raise UserError(f"--export {tool}: {TOOL_NAMES[tool]} fine-tunes decoder language models on text (SFT); this "
                    f"decision is {setting.task_kind} on a{'n' if setting.architecture[0] == 'e' else ''} "
                    f"{setting.architecture} model: export it with --export peft")


def peft_methods() -> tuple[str, ...]:
    from peftbench.methods import registry

    return tuple(sorted(name for name, method in registry().items() if method.peft_config))


def target_modules(setting: ExportSetting, tool: str, table: str = "LORA") -> list[str] | str:
    """The method's target modules: 'all-linear', a list, or, where the setting leaves them to peft (None),
    peft's own default for this model type, which the tools do not apply themselves."""
    targets = setting.hyperparameters.get("target_modules")
    if isinstance(targets, str):
        return targets
    if targets is not None:
        return list(targets)
    from peft.utils import constants

    defaults = getattr(constants, f"TRANSFORMERS_MODELS_TO_{table}_TARGET_MODULES_MAPPING")
    if setting.model_type in defaults:
        return list(defaults[setting.model_type])
    raise UserError(f"--export {tool}: peft has no default target modules for model type "
                    f"{setting.model_type or 'unknown'} ({setting.model}); export with --export peft, which leaves "
                    "them to peft at load time")


def data_notes(setting: ExportSetting, where: str, columns: tuple[str, ...] = GENERATION_COLUMNS) -> list[str]:
    if setting.data is not None:
        return []
    return [f"no --data: {where} names {DATA_PLACEHOLDER}, a placeholder; replace it with your training file "
            f"(JSONL/CSV/Parquet with {' and '.join(columns)} columns)"]


def data_file(setting: ExportSetting) -> tuple[str, str]:
    """(path, datasets' loader name) of the training file, or of the placeholder."""
    path = setting.data if setting.data is not None else Path(DATA_PLACEHOLDER)
    return str(path), DATA_BUILDERS.get(path.suffix, "json")


def yaml_text(config: Mapping[str, Any], header: list[str]) -> str:
    import yaml

    return "".join(f"# {line}\n" for line in header) + yaml.safe_dump(dict(config), sort_keys=False)


def header(setting: ExportSetting, command: str) -> list[str]:
    return [f"Written by peftbench: {setting.method} on {setting.model} "
            f"(micro-batch {setting.batch_size} x {setting.gradient_accumulation} accumulation"
            f"{f' on each of {setting.gpus} GPUs' if setting.gpus > 1 else ''}).", f"Run: {command}"]


def multi_gpu_notes(setting: ExportSetting, launcher: str) -> list[str]:
    if setting.gpus == 1:
        return []
    return [f"the answer trains data-parallel on {setting.gpus} GPUs: launch with {launcher}; the batch sizes are "
            "per GPU"]


def quantized(setting: ExportSetting) -> bool:
    from peftbench.methods import get_method

    return get_method(setting.method).quantize_4bit
