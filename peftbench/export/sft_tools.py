"""LLaMA-Factory's and axolotl's YAML: both fine-tune decoder language models on text (SFT), with LoRA, QLoRA,
DoRA, rsLoRA or full fine-tuning (and OFT in LLaMA-Factory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.export.common import (
    Exported,
    data_file,
    data_notes,
    header,
    multi_gpu_notes,
    quantized,
    require_method,
    require_sft,
    target_modules,
    yaml_text,
)
from peftbench.export.setting import DATA_PLACEHOLDER, GENERATION_COLUMNS, OUTPUT_DIR, ExportSetting


def llamafactory_files(setting: ExportSetting, out_dir: Path) -> Exported:
    """Its training YAML (model, method, dataset, output, train sections of its examples) and the
    dataset_info.json entry that maps the file's columns to its alpaca format."""
    require_sft(setting, "llamafactory")
    require_method(setting, "llamafactory")
    dataset = "peftbench_data" if setting.data is not None else Path(DATA_PLACEHOLDER).stem
    config: dict[str, Any] = {"model_name_or_path": setting.model, "stage": "sft", "do_train": True,
                              **_llamafactory_method(setting),
                              # LLaMA-Factory checkpoints by default; its switch is the negative one
                              "disable_gradient_checkpointing": not setting.gradient_checkpointing,
                              # `empty`: prompt and answer joined as written, as `peftbench run` trains them
                              "dataset": dataset, "dataset_dir": str(out_dir.expanduser().resolve()),
                              "template": "empty", "output_dir": OUTPUT_DIR,
                              "per_device_train_batch_size": setting.batch_size,
                              "gradient_accumulation_steps": setting.gradient_accumulation,
                              "learning_rate": setting.learning_rate, "num_train_epochs": setting.epochs,
                              **_llamafactory_precision(setting)}
    if setting.seq_len:
        config["cutoff_len"] = setting.seq_len
    if setting.max_steps:
        config["max_steps"] = setting.max_steps
    info = {dataset: {"file_name": data_file(setting)[0], "formatting": "alpaca",
                      "columns": {"prompt": GENERATION_COLUMNS[0], "response": GENERATION_COLUMNS[1]}}}
    name = "llamafactory_sft.yaml"
    command = f"llamafactory-cli train {out_dir / name}"
    notes = data_notes(setting, "dataset_info.json") + multi_gpu_notes(
        setting, "llamafactory-cli train (it starts torchrun on every visible GPU)")
    return Exported({name: yaml_text(config, header(setting, command)),
                     "dataset_info.json": json.dumps(info, indent=2) + "\n"}, command, notes)


def _llamafactory_method(setting: ExportSetting) -> dict[str, Any]:
    hps = setting.hyperparameters
    if setting.method == "full":
        return {"finetuning_type": "full"}
    if setting.method == "oft":
        return {"finetuning_type": "oft", "oft_rank": hps.get("r", 0), "oft_block_size": hps.get("oft_block_size", 32),
                "module_dropout": hps.get("module_dropout", 0.0),
                "oft_target": _llamafactory_targets(target_modules(setting, "llamafactory", "OFT"))}
    fields: dict[str, Any] = {"finetuning_type": "lora", "lora_rank": hps.get("r", 8),
                              "lora_alpha": hps.get("lora_alpha", 8), "lora_dropout": hps.get("lora_dropout", 0.0),
                              "lora_target": _llamafactory_targets(target_modules(setting, "llamafactory")),
                              **{k: v for k, v in setting.lora_options.items() if v}}
    if quantized(setting):
        fields.update(quantization_bit=4, quantization_method="bnb", quantization_type="nf4",
                      double_quantization=True)
    return fields


def _llamafactory_targets(targets: list[str] | str) -> str:
    """LLaMA-Factory's comma-separated module names, `all` for every linear layer."""
    if targets == "all-linear":
        return "all"
    if isinstance(targets, str):
        raise UserError(f"--export llamafactory: target modules {targets!r} are a pattern; LLaMA-Factory takes "
                        "module names or `all`")
    return ",".join(targets)


def _llamafactory_precision(setting: ExportSetting) -> dict[str, Any]:
    """The answer's pure bf16 (weights, gradients and optimizer states in bf16) is LLaMA-Factory's `pure_bf16`;
    its `bf16` would keep fp32 trainable parameters and their states."""
    if setting.precision == "bf16" and setting.autocast is None:
        return {"pure_bf16": True}
    return {"bf16": setting.trainer_precision == "bf16", "fp16": setting.trainer_precision == "fp16"}



def axolotl_files(setting: ExportSetting, out_dir: Path) -> Exported:
    """Its YAML: base model, adapter and LoRA fields, one dataset of the user-defined prompt format that maps
    source to instruction and target to output, and the trainer settings."""
    require_sft(setting, "axolotl")
    require_method(setting, "axolotl")
    path, builder = data_file(setting)
    config: dict[str, Any] = {"base_model": setting.model, **_axolotl_adapter(setting),
                              "datasets": [{"path": path, "ds_type": builder, "type": {
                                  "field_instruction": GENERATION_COLUMNS[0], "field_output": GENERATION_COLUMNS[1],
                                  "format": "{instruction}", "no_input_format": "{instruction}"}}],
                              "output_dir": OUTPUT_DIR, "micro_batch_size": setting.batch_size,
                              "gradient_accumulation_steps": setting.gradient_accumulation,
                              "learning_rate": setting.learning_rate, "num_epochs": setting.epochs,
                              "gradient_checkpointing": setting.gradient_checkpointing,
                              "bf16": setting.trainer_precision == "bf16", "fp16": setting.trainer_precision == "fp16"}
    if setting.seq_len:
        config["sequence_len"] = setting.seq_len
    if setting.max_steps:
        config["max_steps"] = setting.max_steps
    name = "axolotl.yaml"
    command = f"axolotl train {out_dir / name}"
    notes = data_notes(setting, name) + multi_gpu_notes(
        setting, f"axolotl train --launcher accelerate --num-processes {setting.gpus}")
    if setting.autocast:
        notes.append(f"axolotl loads the weights in {setting.autocast} under its {setting.autocast} flag, not fp32 "
                     "with autocast as the answer assumed: less memory than estimated, not more")
    return Exported({name: yaml_text(config, header(setting, command))}, command, notes)


def _axolotl_adapter(setting: ExportSetting) -> dict[str, Any]:
    """No `adapter` is full fine-tuning; QLoRA is `adapter: qlora` with `load_in_4bit`."""
    if setting.method == "full":
        return {}
    hps = setting.hyperparameters
    targets = target_modules(setting, "axolotl")
    fields: dict[str, Any] = {"adapter": "qlora" if quantized(setting) else "lora", "lora_r": hps.get("r", 8),
                              "lora_alpha": hps.get("lora_alpha", 8), "lora_dropout": hps.get("lora_dropout", 0.0)}
    if quantized(setting):
        fields["load_in_4bit"] = True
    fields.update({"lora_target_linear": True} if targets == "all-linear" else {"lora_target_modules": targets})
    fields.update({f"peft_{k}": True for k, v in setting.lora_options.items() if v})
    return fields
