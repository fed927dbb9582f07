"""Suites: YAML files declaring tasks, their data, the default model, methods and seeds.

peftbench's own suites ship inside the package (`peftbench.suite_files`; `suites/` in the repository);
`suite=PATH.yaml` runs any other. A task's local data files resolve against its YAML file's folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from peftbench.errors import UserError
from peftbench.vocabulary import TASK_KINDS


def suites_dir() -> Path:
    """The shipped suites' folder (in a source checkout: `suites/`)."""
    from importlib.resources import files

    return Path(str(files("peftbench.suite_files")))


KIND_FIELDS = {
    "classification": ("text", "label"),
    "generation": ("source", "target"),
    "multiple_choice": ("question", "choices", "answer"),
}
DEFAULT_METRICS = {
    "classification": ["accuracy", "macro_f1"],
    "generation": ["rouge1", "rouge2", "rougeL", "bleu", "chrf"],
    "multiple_choice": ["accuracy"],
}


@dataclass(frozen=True)
class TrainConfig:
    """How one run trains. Suite YAML sets defaults, tasks override, `train.KEY=VALUE` overrides both."""

    max_steps: int = 60
    batch_size: int = 8
    eval_batch_size: int = 32
    learning_rate: float | None = None  # None: the method's default times lr_multiplier
    # Short schedules (tens of steps, as in the CPU suites) need larger steps than the defaults, which
    # suit runs of thousands of steps. Scaling every method's default by one factor keeps their ratios.
    lr_multiplier: float = 1.0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    dtype: str = "fp32"
    gradient_checkpointing: bool = False
    # `batch_size` is the micro-batch: each optimizer step accumulates this many micro-batches' gradients
    # (effective batch = batch_size x gradient_accumulation_steps); `max_steps` counts optimizer steps.
    gradient_accumulation_steps: int = 1
    threads: int = 1  # CPU threads; 1 keeps timings stable when anything else runs on the machine

    @classmethod
    def build(cls, *layers: dict[str, Any]) -> TrainConfig:
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer or {})
        valid = {f.name: f for f in dataclasses.fields(cls)}
        for key in merged:
            if key not in valid:
                raise UserError(f"unknown training key 'train.{key}' (valid: {', '.join(valid)})")
        config = cls(**merged)
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "eval_batch_size", "threads", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"train.{name} must be a positive integer, got {value!r}")
        if self.learning_rate is not None and not (isinstance(self.learning_rate, (int, float))
                                                   and self.learning_rate > 0):
            raise UserError(f"train.learning_rate must be a positive number, got {self.learning_rate!r}")
        if not (isinstance(self.lr_multiplier, (int, float)) and self.lr_multiplier > 0):
            raise UserError(f"train.lr_multiplier must be a positive number, got {self.lr_multiplier!r}")
        if not isinstance(self.gradient_checkpointing, bool):
            raise UserError(f"train.gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}")
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise UserError(f"train.dtype must be fp32, bf16 or fp16, got {self.dtype!r}")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    data: dict[str, Any]
    fields: dict[str, str]
    model: str
    sizes: dict[str, int]
    max_length: int = 128
    max_target_length: int = 32
    prompt: str | None = None
    labels: tuple[str, ...] | None = None
    metrics: tuple[str, ...] = ()
    train: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    model: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    train: dict[str, Any]
    tasks: tuple[TaskSpec, ...]
    path: Path
    hub_tasks: tuple[TaskSpec, ...] = ()  # need the Hugging Face hub: run only when named in tasks=[...]

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks + self.hub_tasks:
            if task.name == name:
                return task
        names = ", ".join(t.name for t in self.tasks + self.hub_tasks)
        raise UserError(f"suite '{self.name}' has no task '{name}' (tasks: {names})")


def available_suites(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or suites_dir()).glob("*.yaml"))


def suite_path(name: str, directory: Path | None = None) -> Path:
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate.resolve()
    directory = directory or suites_dir()
    path = directory / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown suite '{name}' (available: {', '.join(available_suites(directory))})")
    return path


def load_suite(name: str, directory: Path | None = None) -> Suite:
    """Parse and validate a suite; every problem is a UserError naming the file and the field."""
    path = suite_path(name, directory)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"malformed YAML in {path}{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a suite must be a mapping with 'name' and 'tasks'")
    unknown = set(raw) - {"name", "description", "model", "methods", "seeds", "train", "tasks", "hub_tasks"}
    if unknown:
        raise UserError(f"{path}: unknown suite keys {sorted(unknown)}")
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise UserError(f"{path}: 'tasks' must be a non-empty list")
    default_model = raw.get("model", "minilm")
    parsed = tuple(_parse_task(t, default_model, path) for t in tasks)
    hub = tuple(_parse_task(t, default_model, path) for t in raw.get("hub_tasks") or [])
    offline = [t.name for t in hub if t.data["source"] != "hub"]
    if offline:
        raise UserError(f"{path}: hub_tasks {offline} must have data.source hub")
    names = [t.name for t in parsed + hub]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate task names in {names}")
    suite = Suite(name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")),
                  model=default_model, methods=tuple(raw.get("methods") or ("lora",)),
                  seeds=tuple(raw.get("seeds") or (0,)), train=dict(raw.get("train") or {}), tasks=parsed,
                  path=path, hub_tasks=hub)
    TrainConfig.build(suite.train)
    return suite


def _parse_task(raw: Any, default_model: str, path: Path) -> TaskSpec:
    if not isinstance(raw, dict) or "name" not in raw:
        raise UserError(f"{path}: every task needs a 'name'")
    where = f"{path}: task '{raw['name']}'"
    kind = raw.get("kind")
    if kind not in TASK_KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(TASK_KINDS)}, got {kind!r}")
    allowed = {f.name for f in dataclasses.fields(TaskSpec)}
    unknown = set(raw) - allowed
    if unknown:
        raise UserError(f"{where}: unknown keys {sorted(unknown)} (valid: {', '.join(sorted(allowed))})")
    data = raw.get("data")
    if not isinstance(data, dict) or data.get("source") not in ("shipped", "local", "hub"):
        raise UserError(f"{where}: data.source must be shipped, local or hub")
    if data["source"] == "local" and isinstance(data.get("files"), dict):
        # Relative to the YAML file, not to wherever the command runs: a suite folder can be moved whole.
        data = {**data, "files": {split: str((path.parent / str(f)).expanduser()) if f is not None else f
                                  for split, f in data["files"].items()}}
    if data["source"] == "hub" and isinstance(data.get("id"), str) and (path.parent / data["id"]).exists():
        data = {**data, "id": str((path.parent / data["id"]).resolve())}  # a local copy beside the YAML
    fields = dict(raw.get("fields") or {r: r for r in KIND_FIELDS[kind]})
    missing = [r for r in KIND_FIELDS[kind] if r not in fields]
    if missing:
        raise UserError(f"{where}: fields must map {', '.join(KIND_FIELDS[kind])}; missing {missing}")
    if kind != "classification" and not raw.get("prompt"):
        raise UserError(f"{where}: {kind} tasks need a 'prompt' template")
    sizes = dict(raw.get("sizes") or {})
    labels = raw.get("labels")
    return TaskSpec(name=str(raw["name"]), kind=kind, data=data, fields=fields,
                    model=str(raw.get("model", default_model)),
                    sizes={k: int(v) for k, v in sizes.items()}, max_length=int(raw.get("max_length", 128)),
                    max_target_length=int(raw.get("max_target_length", 32)), prompt=raw.get("prompt"),
                    labels=tuple(str(x) for x in labels) if labels else None,
                    metrics=tuple(raw.get("metrics") or DEFAULT_METRICS[kind]), train=dict(raw.get("train") or {}),
                    description=str(raw.get("description", "")))
