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

    @property
    def run_id(self) -> str:
        """Hash of everything that determines the result (not library versions: those are recorded)."""
        identity = asdict(self)
        for kept in ("save_adapters", "save_full_weights"):
            identity.pop(kept)
        identity["train"] = {k: v for k, v in self.train.items() if k != "threads"}
        blob = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls(**json.loads(text))

    def label(self) -> str:
        return f"{self.task['name']}/{self.method}/seed{self.seed}"


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
    }
    record["config_id"] = config_id(record)
    return record
