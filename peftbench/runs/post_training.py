"""After a run trains, evaluates and saves: its inference cost and what it forgot.

Called by the worker (`runs/worker.py`, `finish`) as the last step of a run, once nothing
else needs the trained model. Neither measurement can fail the run: an error is recorded in its place.
A run skips both when its spec says so (`measure_after_training=false`, e.g. when only training figures matter, as
in a pilot); `PEFTBENCH_POST_TRAINING=0` makes that the default of every run planned in the process.
"""

from __future__ import annotations

import gc
import os
import traceback
from typing import Any

POST_TRAINING_ENV_VAR = "PEFTBENCH_POST_TRAINING"


def measure_by_default() -> bool:
    """The default of `measure_after_training` for the runs this process plans."""
    return os.environ.get(POST_TRAINING_ENV_VAR, "1") != "0"


def after_training(spec: Any, setup: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """`{"inference": ..., "forgetting": ...}` for the run record; nothing where the spec skips them."""
    if not spec.measure_after_training:
        return {}
    from peftbench import telemetry

    # The inference pass resets the RSS high-water mark (to measure its own peak); keep the run's peak first.
    fields["memory"]["peak_rss_before_inference_bytes"] = telemetry.peak_rss()
    base = _BaseLoader(spec, setup)
    out: dict[str, Any] = {"forgetting": _guarded(lambda: _forgetting(spec, setup, base))}
    out["inference"] = _guarded(lambda: _inference(spec, setup, base))
    base.release()
    return out


def _guarded(measure: Any) -> dict[str, Any]:
    try:
        return measure()
    except Exception as exc:  # a measurement after training must never cost the run its result
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4)}


class _BaseLoader:
    """Loads the untuned base model once, as the run loaded it, for whichever measurement asks first."""

    def __init__(self, spec: Any, setup: Any) -> None:
        self.spec, self.setup, self.model = spec, setup, None

    def __call__(self) -> Any:
        if self.model is None:
            from peftbench.models import load_for_task

            spec, setup = self.spec, self.setup
            loaded = load_for_task(spec.model, setup.task.kind, setup.prepared.num_labels, spec.train.dtype,
                                   setup.method.quantize_4bit, spec.trust_remote_code, tokenizer=setup.tokenizer)
            self.model = loaded.model.to(spec.device).eval()
        return self.model

    def release(self) -> None:
        self.model = None
        gc.collect()


def _forgetting(spec: Any, setup: Any, base: _BaseLoader) -> dict[str, Any]:
    from peftbench.forgetting import applicable, measure_forgetting

    reason = applicable(setup.ctx.architecture, setup.task.kind)
    if reason:
        return {"measured": False, "reason": reason}
    key = {"model": spec.model, "dtype": spec.train.dtype, "device": spec.device.split(":")[0]}
    result = measure_forgetting(setup.model, setup.tokenizer, load_base=base, cache_key=key, device=spec.device)
    return {"measured": True, **result.to_dict()}


def _inference(spec: Any, setup: Any, base: _BaseLoader) -> dict[str, Any]:
    from peftbench.inference import measure_inference

    cost = measure_inference(setup.model, setup.tokenizer, setup.task, setup.prepared, setup.method.name,
                             load_base=base, device=spec.device)
    return cost.to_dict()
