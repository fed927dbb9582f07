"""A run: one (task, model, method, seed) combination, fully specified, with a content-derived id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    suite: str
    task: dict[str, Any]  # TaskSpec.to_dict()
    model: str
    method: str
    hyperparameters: dict[str, Any]
    train: dict[str, Any]  # TrainConfig as a dict, learning rate resolved
    seed: int
    scale: str
    data_fingerprint: str
    device: str = "cpu"
    trust_remote_code: bool = False
    # What to keep on disk after the run; not part of the identity (it changes no result). Adapters are
    # small and kept by default; full fine-tuned weights are the whole model (514 MB for SmolLM2-135M).
    save_adapters: bool = True
    save_full_weights: bool = False
    # Learning-rate selection (`tune=lr`, peftbench.runs.tuning): None for a plain run; for a sweep run
    # {"role": "sweep", ...} (trains on the training rows outside a validation split, scores on that split);
    # for a selected run {"role": "selected", "selected_from": [run ids], ...}. Part of the identity when set.
    tune: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        """Hash of everything that determines the result (not library versions: those are recorded)."""
        identity = asdict(self)
        for kept in ("save_adapters", "save_full_weights"):
            identity.pop(kept)
        if self.tune is None:  # absent, not null: plain runs keep the ids they had before the field existed
            identity.pop("tune")
        else:  # the sweep's scores explain the choice; the chosen rate (in train) is what determines the run
            identity["tune"] = {k: v for k, v in self.tune.items() if k != "scores"}
        identity["train"] = train_identity(self.train)
        blob = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls(**json.loads(text))

    def label(self) -> str:
        return f"{self.task['name']}/{self.method}/seed{self.seed}"


def train_identity(train: dict[str, Any]) -> dict[str, Any]:
    """The training settings that determine a result: all but the thread count, and without
    `gradient_accumulation_steps` when it is 1 — the key was added later with default 1, and a run
    without accumulation is the same run whether or not its record names it: keeping it out at 1 keeps
    every earlier run id and configuration id unchanged. A run over several processes carries
    `world_size`, `strategy` and `offload` here (a one-process run has none of them), so they are part of
    both ids."""
    return {k: v for k, v in train.items()
            if k != "threads" and not (k == "gradient_accumulation_steps" and v == 1)}


def base_record(spec: RunSpec) -> dict[str, Any]:
    """The identity fields every record carries, whatever its status."""
    from peftbench.results import config_id
    from peftbench.telemetry import machine_id

    record = {
        "machine_id": machine_id(),
        "run_id": spec.run_id, "suite": spec.suite, "task": spec.task["name"], "task_kind": spec.task["kind"],
        "model": spec.model, "method": spec.method, "hyperparameters": spec.hyperparameters,
        "train_config": spec.train, "seed": spec.seed, "scale": spec.scale,
        "data_fingerprint": spec.data_fingerprint, "trust_remote_code": spec.trust_remote_code,
        "world_size": spec.train.get("world_size", 1),
    }
    if record["world_size"] > 1:  # a run over several processes (peftbench.runs.launch)
        record.update(strategy=spec.train["strategy"], offload=spec.train["offload"])
    if spec.tune is not None:
        record["role"] = spec.tune["role"]
        record["tune"] = {k: v for k, v in spec.tune.items() if k not in ("role", "selected_from")}
        if "selected_from" in spec.tune:
            record["selected_from"] = spec.tune["selected_from"]
    record["config_id"] = config_id(record)
    return record
