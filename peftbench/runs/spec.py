"""A run: one (task, model, method, seed) combination, fully specified, with a content-derived id.

A RunSpec crosses process boundaries (the subprocess worker, Ray tasks, torchrun ranks) as the JSON of
`to_json`, and comes back whole through `from_json`: the one serialised form. Its id is the hash of the same
canonical dict as before the task and training settings were typed (`identity`), so that every recorded run
keeps its id and resume still finds it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from peftbench.identity import config_id, run_id, train_identity
from peftbench.suites import TaskSpec, TrainConfig


@dataclass(frozen=True)
class Processes:
    """How a run over several processes is laid out (peftbench.runs.launch.multi_process_options)."""

    world_size: int
    strategy: str  # ddp | fsdp | zero2 | zero3
    offload: str  # none | optimizer | params

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunSpec:
    suite: str
    task: TaskSpec
    model: str
    method: str
    hyperparameters: dict[str, Any]
    train: TrainConfig  # the learning rate resolved (never None here)
    seed: int
    scale: str
    data_fingerprint: str
    device: str = "cpu"
    trust_remote_code: bool = False
    # What to keep on disk after the run; not part of the identity (it changes no result). Adapters are
    # small and kept by default; full fine-tuned weights are the whole model (514 MB for SmolLM2-135M).
    save_adapters: bool = True
    save_full_weights: bool = False
    # Whether the worker measures the tuned model's inference cost and forgetting after training
    # (`runs.post_training`). Not part of the identity: it changes no training result, only which measurements
    # the record carries. Carried by the spec so that every worker (subprocess, Ray, torchrun rank) sees it.
    measure_after_training: bool = True
    # Learning-rate selection (`tune=lr`, peftbench.runs.tuning): None for a plain run; for a sweep run
    # {"role": "sweep", ...} (trains on the training rows outside a validation split, scores on that split);
    # for a selected run {"role": "selected", "selected_from": [run ids], ...}. Part of the identity when set.
    tune: dict[str, Any] | None = None
    processes: Processes | None = None  # None: one process

    @property
    def world_size(self) -> int:
        return self.processes.world_size if self.processes is not None else 1

    def train_config(self) -> dict[str, Any]:
        """The training settings as records keep them (`train_config`) and ids hash them: the TrainConfig's
        fields, plus `world_size`, `strategy` and `offload` for a run over several processes."""
        return dataclasses.asdict(self.train) | (self.processes.to_dict() if self.processes else {})

    def identity(self) -> dict[str, Any]:
        """Everything that determines the result (not library versions: those are recorded), in the shape
        run ids have always hashed: the task as a plain dict, the training settings flattened."""
        identity: dict[str, Any] = {
            "suite": self.suite, "task": _task_dict(self.task), "model": self.model, "method": self.method,
            "hyperparameters": self.hyperparameters, "train": train_identity(self.train_config()),
            "seed": self.seed, "scale": self.scale, "data_fingerprint": self.data_fingerprint,
            "device": self.device, "trust_remote_code": self.trust_remote_code,
        }
        if self.tune is not None:  # absent, not null: plain runs keep the ids they had before the field existed
            # the sweep's scores explain the choice; the chosen rate (in train) is what determines the run
            identity["tune"] = {k: v for k, v in self.tune.items() if k != "scores"}
        return identity

    @property
    def run_id(self) -> str:
        return run_id(self.identity())

    @property
    def config_id(self) -> str:
        return config_id(suite=self.suite, task=self.task.name, model=self.model, method=self.method,
                         hyperparameters=self.hyperparameters, scale=self.scale,
                         data_fingerprint=self.data_fingerprint, train_config=self.train_config(),
                         role=self.tune["role"] if self.tune is not None else None)

    def with_learning_rate(self, lr: float, **changes: Any) -> RunSpec:
        """This run at another learning rate (in both the training settings and the hyper-parameters)."""
        return dataclasses.replace(self, hyperparameters={**self.hyperparameters, "learning_rate": lr},
                                   train=dataclasses.replace(self.train, learning_rate=lr), **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        fields = json.loads(text)
        processes = fields.pop("processes", None)
        return cls(**fields | {"task": task_from_dict(fields["task"]), "train": TrainConfig(**fields["train"]),
                               "processes": Processes(**processes) if processes else None})

    def label(self) -> str:
        """How progress lines name the run; a learning-rate sweep's runs of one method differ only by their rate."""
        rate = f"/lr{self.train.learning_rate:.3g}" if self.tune and self.tune.get("role") == "sweep" else ""
        return f"{self.task.name}/{self.method}{rate}/seed{self.seed}"


def _task_dict(task: TaskSpec) -> dict[str, Any]:
    """The task as run ids hash it: lists for its tuples, no labels as null."""
    out = task.to_dict()
    out["labels"] = list(out["labels"]) if out["labels"] else None
    out["metrics"] = list(out["metrics"])
    return out


def task_from_dict(fields: dict[str, Any]) -> TaskSpec:
    """A TaskSpec from its JSON form (lists back to tuples)."""
    return TaskSpec(**fields | {"labels": tuple(fields["labels"]) if fields["labels"] else None,
                                "metrics": tuple(fields["metrics"])})


def base_record(spec: RunSpec) -> dict[str, Any]:
    """The identity fields every record carries, whatever its status: the start of the record a worker fills."""
    from peftbench.telemetry import machine_id

    fields: dict[str, Any] = {
        "machine_id": machine_id(),
        "run_id": spec.run_id, "suite": spec.suite, "task": spec.task.name, "task_kind": spec.task.kind,
        "model": spec.model, "method": spec.method, "hyperparameters": spec.hyperparameters,
        "train_config": spec.train_config(), "seed": spec.seed, "scale": spec.scale,
        "data_fingerprint": spec.data_fingerprint, "trust_remote_code": spec.trust_remote_code,
        "world_size": spec.world_size,
    }
    if spec.processes is not None:  # a run over several processes (peftbench.runs.launch)
        fields.update(strategy=spec.processes.strategy, offload=spec.processes.offload)
    if spec.tune is not None:
        fields["role"] = spec.tune["role"]
        fields["tune"] = {k: v for k, v in spec.tune.items() if k not in ("role", "selected_from")}
        if "selected_from" in spec.tune:
            fields["selected_from"] = spec.tune["selected_from"]
    fields["config_id"] = spec.config_id
    return fields
