"""peft's own files (adapter config, `TrainingArguments`, `from_pretrained` keywords) and `trl sft`'s YAML, which
reads the same training arguments and LoRA fields."""

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
from peftbench.export.setting import (
    GENERATION_COLUMNS,
    OUTPUT_DIR,
    TOOL_METHODS,
    TOOLS,
    TORCH_DTYPES,
    TRL_COLUMNS,
    ExportSetting,
)


def _peft_config(setting: ExportSetting) -> Any:
    """The registry's peft config class for the method, built by peft (its own checks run), with the base model
    named as `PeftConfig.from_pretrained` reports it."""
    import peft

    from peftbench.methods import MethodContext, get_method

    method = get_method(setting.method)
    if method.peft_config is None:
        why = ("full fine-tuning has no adapter" if setting.method == "full"
               else f"{setting.method} is peftbench's own implementation, not a peft method")
        others = [t for t in TOOLS if setting.method in TOOL_METHODS.get(t, ())]
        raise UserError(f"--export peft: peft cannot express {setting.method} ({why})"
                        + (f"; export it with --export {' or '.join(others)}" if others else ""))
    kwargs = {k: v for k, v in setting.hyperparameters.items() if v is not None}
    if setting.method == "adalora" and kwargs.get("total_step") is None:
        if setting.max_steps is None:
            raise UserError("--export peft: AdaLoRA's rank schedule needs its total steps: give --train-examples or "
                            "--data")
        kwargs["total_step"] = setting.max_steps
    task_type = MethodContext(setting.architecture, setting.model_type or "", setting.task_kind).peft_task_type
    try:
        config = getattr(peft, method.peft_config)(task_type=task_type, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--export peft: {method.peft_config} refuses these settings: {exc}") from None
    config.base_model_name_or_path = setting.model
    return config


def peft_files(setting: ExportSetting, out_dir: Path) -> Exported:
    import tempfile

    config = _peft_config(setting)
    with tempfile.TemporaryDirectory() as scratch:
        config.save_pretrained(scratch)  # peft's own writer: the file is exactly what peft reads back
        adapter_config = (Path(scratch) / "adapter_config.json").read_text()
    files = {"adapter_config.json": adapter_config,
             "training_args.json": json.dumps(_training_arguments(setting), indent=2) + "\n",
             "model_init_kwargs.json": json.dumps(_model_init_kwargs(setting), indent=2) + "\n"}
    command = ("load the base with from_pretrained(base_model_name_or_path, **model_init_kwargs.json), wrap it with "
               "peft.get_peft_model(model, PeftConfig.from_pretrained(DIR)), train with "
               "TrainingArguments(**training_args.json)")
    return Exported(files, command, multi_gpu_notes(setting, "accelerate launch or torchrun"))


def _training_arguments(setting: ExportSetting) -> dict[str, Any]:
    """transformers' `TrainingArguments` fields, nothing else, so `HfArgumentParser(TrainingArguments)` reads
    the file as is. `gradient_checkpointing`, not its newer alias `activation_checkpointing`: the old name is read
    by every transformers release before 6 (with a FutureWarning on the newest), the new one only by recent ones."""
    args = {"output_dir": OUTPUT_DIR, "learning_rate": setting.learning_rate,
            "per_device_train_batch_size": setting.batch_size,
            "gradient_accumulation_steps": setting.gradient_accumulation,
            "gradient_checkpointing": setting.gradient_checkpointing, "num_train_epochs": setting.epochs,
            "bf16": setting.trainer_precision == "bf16", "fp16": setting.trainer_precision == "fp16"}
    if setting.max_steps:
        args["max_steps"] = setting.max_steps
    return args


def _model_init_kwargs(setting: ExportSetting) -> dict[str, Any]:
    """`from_pretrained` keywords: the weights' dtype and, for QLoRA, the 4-bit NF4 quantisation with double
    quantisation that `peftbench run` loads (`BitsAndBytesConfig.from_dict` reads it)."""
    kwargs: dict[str, Any] = {"dtype": _load_dtype(setting)}
    if quantized(setting):
        kwargs["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                         "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                         "bnb_4bit_compute_dtype": TORCH_DTYPES[setting.trainer_precision or "fp32"]}
    return kwargs


def _load_dtype(setting: ExportSetting) -> str:
    """The dtype to load the weights in. Full fine-tuning in fp16 loads fp32 weights under fp16 autocast: the
    trainers' gradient scaler refuses to unscale fp16 gradients, and adapters stay fp32 in peft anyway."""
    if setting.precision == "fp16" and setting.method == "full":
        return "float32"
    return TORCH_DTYPES[setting.precision]


def trl_files(setting: ExportSetting, out_dir: Path) -> Exported:
    """One YAML of `trl sft`'s four dataclasses (ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)."""
    require_sft(setting, "trl")
    require_method(setting, "trl")
    path, builder = data_file(setting)
    config: dict[str, Any] = {"model_name_or_path": setting.model, "dtype": _load_dtype(setting),
                              **_trl_peft(setting), **_training_arguments(setting)}
    if setting.seq_len:
        config["max_length"] = setting.seq_len
    config["datasets"] = [{"path": builder, "data_files": path}]
    name = "trl_sft.yaml"
    command = f"trl sft --config {out_dir / name}"
    notes = data_notes(setting, name, TRL_COLUMNS) + multi_gpu_notes(
        setting, f"trl sft --num_processes {setting.gpus}")
    if setting.data is not None:  # trl sft's dataset fields select columns but cannot rename them
        notes.append(f"trl sft reads {' and '.join(TRL_COLUMNS)} columns: rename {setting.data.name}'s "
                     f"{' and '.join(GENERATION_COLUMNS)} to them")
    return Exported({name: yaml_text(config, header(setting, command))}, command, notes)


def _trl_peft(setting: ExportSetting) -> dict[str, Any]:
    """ModelConfig's LoRA and 4-bit fields (`trl.get_peft_config`, `trl.get_quantization_config`)."""
    if setting.method == "full":
        return {"use_peft": False}
    hps = setting.hyperparameters
    fields: dict[str, Any] = {"use_peft": True, "lora_r": hps.get("r", 8), "lora_alpha": hps.get("lora_alpha", 8),
                              "lora_dropout": hps.get("lora_dropout", 0.0),
                              "lora_target_modules": target_modules(setting, "trl"), **setting.lora_options}
    if quantized(setting):
        fields.update(load_in_4bit=True, bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
    return fields

