"""Export a decision (a method and its settings) as the config another trainer reads as is.

`export(setting, tool, out_dir)` writes, for
- peft: `adapter_config.json` (the method's peft config class, saved by peft itself), `training_args.json`
  (transformers' `TrainingArguments` fields) and `model_init_kwargs.json` (`from_pretrained`'s dtype and, for
  QLoRA, its 4-bit `quantization_config`);
- trl: `trl_sft.yaml`, for `trl sft --config trl_sft.yaml`;
- llamafactory: `llamafactory_sft.yaml` and the `dataset_info.json` it names, for
  `llamafactory-cli train llamafactory_sft.yaml`;
- axolotl: `axolotl.yaml`, for `axolotl train axolotl.yaml`.

A method or task the tool cannot express is refused with one line (`UserError`) before anything is written.
`setting_from_candidate` builds the setting from any command's candidate (a recommendation's pick, a pilot's
decision); `export_recommendation` is `recommend --export`.

Imports of peft, torch and yaml stay inside the functions: the CLI imports this module for its choices.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.export.common import Exported
from peftbench.export.peft_trl import peft_files, trl_files
from peftbench.export.setting import (
    TOOLS,
    ExportSetting,
    loadable_model,
    max_steps_from_override,
    model_type,
    precision_from_override,
    setting_from_candidate,
)
from peftbench.export.sft_tools import axolotl_files, llamafactory_files

__all__ = ["TOOLS", "ExportSetting", "export", "export_recommendation", "loadable_model", "max_steps_from_override",
           "model_type", "precision_from_override", "setting_from_candidate"]


def export_recommendation(rec: Mapping[str, Any], tool: str, out_dir: Path | None, *, data: Path | None = None,
                          autocast: str | None = None) -> list[Path]:
    """`recommend --export`: the pick (the ranking's first) as `tool` reads it, into `out_dir` (default
    ./peftbench-export-TOOL). The run line's max_steps is kept, so the tool trains as long as the answer
    costed."""
    if not rec.get("ranking"):
        raise UserError(f"--export {tool}: nothing to export: {rec.get('no_pick_reason') or 'no method is ranked'}")
    pick, task = rec["ranking"][0], rec["task"]
    setting = setting_from_candidate(
        pick, rec["model"], precision_from_override(pick["override"]), task["epochs"], data,
        task_kind=task["kind"], seq_len=task.get("seq_len"), max_steps=max_steps_from_override(pick["override"]),
        autocast=autocast)
    return export(setting, tool, out_dir if out_dir is not None else Path(f"peftbench-export-{tool}"))


def export(setting: ExportSetting, tool: str, out_dir: Path) -> list[Path]:
    """Write `tool`'s config of `setting` into `out_dir` (created) and return the files written. Everything is
    built, and anything the tool cannot express refused, before the first file is written."""
    from peftbench.paths import check_output_dir

    builders: dict[str, Callable[[ExportSetting, Path], Exported]] = {
        "peft": peft_files, "trl": trl_files, "llamafactory": llamafactory_files, "axolotl": axolotl_files}
    if tool not in builders:
        raise UserError(f"--export must be one of {', '.join(TOOLS)}, got {tool!r}")
    out_dir = check_output_dir(Path(out_dir), "--export-dir")
    exported = builders[tool](setting, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in exported.files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    for note in exported.notes:
        print(f"export: {note}", file=sys.stderr)
    print(f"export: wrote {', '.join(str(p) for p in written)}; {exported.command}", file=sys.stderr)
    return written

