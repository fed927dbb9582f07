"""The ids that name a run and a configuration, computed in one place.

A run id names one (task, model, method, settings, seed) run: resume skips a run whose id is already recorded,
so the id must come out the same from every process that computes it (driver, worker, Ray task, torchrun rank)
and across versions of peftbench. A configuration id groups the seeds of one configuration: runs pool as seeds
only when every setting but the seed (and the thread count) agrees.

Both ids hash canonical JSON (sorted keys), so dict order never matters. This module imports neither the
results store nor the runs package: both of them use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Training settings that change no result: the CPU thread count only changes how fast a run goes.
_NOT_IDENTITY = ("threads",)


def train_identity(train: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings that determine a result: all but the thread count, and without
    `gradient_accumulation_steps` when it is 1 — the key was added later with default 1, and a run
    without accumulation is the same run whether or not its record names it: keeping it out at 1 keeps
    every earlier run id and configuration id unchanged. A run over several processes carries
    `world_size`, `strategy` and `offload` here (a one-process run has none of them), so they are part of
    both ids."""
    return {k: v for k, v in train.items()
            if k not in _NOT_IDENTITY and not (k == "gradient_accumulation_steps" and v == 1)}


def run_id(identity: Mapping[str, Any]) -> str:
    """A run's id from its canonical identity (peftbench.runs.spec.RunSpec.identity): 16 hex digits."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_id(*, suite: str, task: str, model: str | None, method: str, hyperparameters: Any, scale: str | None,
              data_fingerprint: str | None, train_config: Mapping[str, Any] | None, role: str | None) -> str:
    """One configuration's id: model, method configuration, data (sizes included, via the fingerprint of the
    rows used), steps, batch size, learning rate and every other training setting — all but the seed and
    the thread count. Computed from what every record carries, so records written before the field existed
    group too. A sweep run (scored on a validation split) never groups with an eval-split run: its role is
    part of the id; a plain run's id has no role in it, as before roles existed."""
    from peftbench.cache import key_of

    fields: list[Any] = [suite, task, model, method, hyperparameters, scale, data_fingerprint]
    if role:
        fields.append(role)
    return key_of(fields, train_identity(train_config or {}), length=12)
