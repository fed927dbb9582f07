"""Shape fits: any batch size and sequence length from eight traces, and the cold `estimate` path they give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from peftbench.estimate import shape_fit

CATEGORIES = ("weights", "gradients", "optimizer_states", "activations", "temporaries")


def _synthetic_trace(b: int, s: int) -> SimpleNamespace:
    """A traced step whose numbers are known polynomials, with two ops that trade the backward peak: late
    backward (all gradients, few activations) and early backward (activations growing with b·s and b·s²)."""
    tokens = b * s
    late = [1000, 100_000, 2000, 2 * tokens, 0]  # weights, gradients, optimizer states, activations, temps
    early = [1000, 0, 2000, 10 * tokens + b * s * s // 8, 3 * tokens]
    return SimpleNamespace(trainable_params=500, total_params=1000, kernels=40, notes=["n"],
                           flops={"bfloat16": 6.0 * tokens * 1000 + 4.0 * b * s * s}, matmul_bytes=2.0 * tokens,
                           other_bytes=5.0 * tokens + 7, logits_bytes=4 * 32000 * tokens,
                           events={"backward": np.array([early, late])})


def _peak(b: int, s: int) -> list[int]:
    return max(_synthetic_trace(b, s).events["backward"].tolist(), key=sum)


def test_fit_is_exact_on_polynomial_traces_and_follows_the_moving_peak():
    fitted = {"per_depth": [shape_fit.fit_depth([_synthetic_trace(*a) for a in shape_fit.ANCHORS])],
              "layers": 1, "traced": [1]}
    for b, s in ((1, 8), (3, 100), (7, 3000)):
        got, want = shape_fit.evaluate(fitted, b, s), _synthetic_trace(b, s)
        assert got["flops"]["bfloat16"] == pytest.approx(want.flops["bfloat16"])
        assert got["other_bytes"] == pytest.approx(want.other_bytes)
        assert got["kernels"] == 40 and got["total_params"] == 1000 and got["notes"] == ["n"]
        assert got["logits_bytes"] == want.logits_bytes
        assert [got["phases"]["backward"][c] for c in CATEGORIES] == _peak(b, s)
    # Every anchor peaks late in backward, yet a long batch peaks early: the fit keeps both ops.
    assert all(_peak(*a)[1] for a in shape_fit.ANCHORS)
    assert shape_fit.evaluate(fitted, 8, 2048)["phases"]["backward"]["gradients"] == 0


@pytest.mark.parametrize("method", ["full", pytest.param("lora", marks=pytest.mark.slow)])
def test_fit_of_a_real_preset_matches_exact_traces_at_other_shapes(method):
    from peftbench.estimate.core import traced
    from peftbench.estimate.trace import Shape
    from peftbench.methods import get_method
    from peftbench.models.configs import load_any_config

    config, m = load_any_config("gpt2"), get_method(method)
    hp = m.hyperparameters()
    base = Shape(1, 1, "bf16", None, "adamw", False, device="cuda")
    built = shape_fit.build(config, m, hp, "generation", base)
    assert built["seq_range"] == [64, 1024]  # GPT-2 has 1024 positions
    for b, s in ((3, 200), (6, 900), (1, 100)):
        exact = traced(config, m, hp, "generation", replace(base, batch_size=b, seq_len=s))
        memory_error, flops_error = shape_fit.check_error(built["fit"], exact, b, s)
        assert memory_error < 0.005 and flops_error < shape_fit.FLOPS_TOLERANCE


def _cold(code: str, cache) -> dict:
    env = {**os.environ, "PEFTBENCH_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


COLD_8B = """
import json, sys
from peftbench.estimate import estimate
e = estimate("llama-3.1-8b", "{method}", batch_size=3, seq_len=700, hardware=["16GB", "a100-80gb"])
print(json.dumps({{**e.to_dict(), "torch_imported": "torch" in sys.modules}}))
"""


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_cold_8b_estimate_answers_from_the_shipped_fit_without_torch(tmp_path, method):
    answer = _cold(COLD_8B.format(method=method), tmp_path)
    assert not answer["torch_imported"]
    assert answer["settings"]["answered_from"].startswith("shape fit")
    assert answer["total_params"] > 4e9 and answer["peak_bytes"] > answer["breakdown"]["weights"]
    if method == "full":  # bf16 AdamW: two states per weight, all trainable
        assert answer["breakdown"]["optimizer_states"] == pytest.approx(2 * answer["breakdown"]["weights"], rel=0.01)
    else:
        assert answer["profiles"]["a100-80gb"]["fits"] and answer["trainable_params"] < 1e7


def test_cold_8b_lora_counts_are_peft_counts(tmp_path):
    answer = _cold(COLD_8B.format(method="lora"), tmp_path)
    # peft's print_trainable_parameters for Llama-3.1-8B, LoRA r=8 on q_proj/v_proj: 3,407,872 trainable
    # of 8,033,669,120 (the base's 8,030,261,248 plus the adapters).
    assert (answer["trainable_params"], answer["total_params"]) == (3_407_872, 8_033_669_120)


def test_shipped_fits_match_the_method_registry():
    """Each method's fits were made with its current version and defaults, and every method ships. A failure
    names the method to rebuild: `python -m peftbench.estimate.ship_fits --methods NAME`."""
    from peftbench.estimate.front_cache import fit_key, shipped_fits
    from peftbench.estimate.ship_fits import SETTING, method_metadata

    store = shipped_fits()
    assert store, "no shipped fits of this ESTIMATOR_VERSION: rebuild with python -m peftbench.estimate.ship_fits"
    current = method_metadata()
    stale = sorted(name for name in current if store["methods"].get(name) != current[name])
    assert not stale, f"methods changed since their fits shipped: rebuild with ship_fits --methods {','.join(stale)}"
    keys = {fit_key("llama-3.1-8b", m, {**SETTING, "gradient_checkpointing": False}, "cuda") for m in current}
    assert keys <= set(store["fits"])


def _registered() -> list:
    """Every method; the canaries' (one of each family and peftbench's own layer code) in the default run."""
    from peftbench.estimate.canary import FAMILY_CANARIES
    from peftbench.methods import registry

    return [m if m in FAMILY_CANARIES else pytest.param(m, marks=pytest.mark.slow) for m in sorted(registry())]


@pytest.mark.parametrize("method", _registered())
def test_canary_shipped_fit_equals_a_fresh_trace(method):
    """The guard that replaces keying caches by library versions or source bytes: a shipped fit must equal a
    trace by today's code and today's libraries, for every method, at a shape that is not an anchor. A change
    that alters traced numbers fails here — then bump `peftbench.versions.ESTIMATOR_VERSION` (or the method's
    `version`) and rebuild the fits; a library release that does fails here too (`peftbench doctor` says so)."""
    from peftbench.estimate import canary

    result = canary.check("qwen2.5-0.5b", method)
    assert result.holds, f"{method}: {canary.verdict([result])}"


@pytest.mark.parametrize("model", ["llama-3.2-1b", "mistral-7b", "gemma-2-2b"])
def test_canary_architectures(model):
    from peftbench.estimate import canary

    result = canary.check(model, "lora")
    assert result.fit_peak is not None and result.holds, canary.verdict([result])


def test_canary_says_drifted_with_the_rebuild_command(monkeypatch):
    """A canary that cannot fail guards nothing: a fit 2% off a fresh trace is reported drifted."""
    import copy

    from peftbench.estimate import canary, front_cache

    real = front_cache.load_fit

    def inflated(*args, **kwargs):
        entry = copy.deepcopy(real(*args, **kwargs))
        for depth in entry["fit"]["per_depth"]:
            for ops in depth["phases"].values():
                for op in ops:
                    for coefs in op:
                        coefs[:] = [c * 1.02 for c in coefs]
        return entry

    monkeypatch.setattr(front_cache, "load_fit", inflated)
    result = canary.check("qwen2.5-0.5b", "lora")
    assert not result.holds and result.peak_drift == pytest.approx(0.02, abs=0.005)
    line = canary.verdict([result])
    assert line.startswith(f"drifted by {result.peak_drift:.1%} on peak memory") and "ship_fits --rebuild" in line


def test_shapes_outside_the_checked_range_are_traced(tmp_path):
    answer = _cold(COLD_8B.format(method="lora").replace("seq_len=700", "seq_len=16").replace(
        "llama-3.1-8b", "smollm2-135m"), tmp_path)
    assert answer["torch_imported"] and answer["settings"]["answered_from"] == "trace"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full", "prompt_tuning"])
def test_shipped_8b_fit_agrees_with_the_trace(method):
    from peftbench.estimate import estimate, estimate_config
    from peftbench.models.configs import load_any_config

    kwargs = dict(batch_size=3, seq_len=700, hardware=["16GB"])
    fast = estimate("llama-3.1-8b", method, **kwargs)
    slow = estimate_config(load_any_config("llama-3.1-8b"), "llama-3.1-8b", method, **kwargs)
    assert fast.settings["answered_from"].startswith("shape fit") and slow.settings["answered_from"] == "trace"
    assert fast.peak_bytes == pytest.approx(slow.peak_bytes, rel=0.005)
    assert fast.flops_per_step == pytest.approx(slow.flops_per_step, rel=0.005)
    assert (fast.trainable_params, fast.total_params) == (slow.trainable_params, slow.total_params)


def _stub_entry(model: str, method: str, setting: dict) -> dict:
    """What `ship_fits._entry` returns, without tracing: the setting it was asked for, to check it is recorded."""
    return {"fit": {"asked": setting}, "checked": [], "max_error": 0.0, "max_flops_error": 0.0, "seq_range": [1, 2],
            "hyperparameters": {}, "extra_notes": [], "computed_with": {}}


def test_ship_fits_records_each_fits_own_setting(monkeypatch, tmp_path):
    """Every shipped fit says which setting it answers (overrides, task kind, checkpointing), the one it was
    traced for, and a rebuild that keeps a fit keeps its record right."""
    import gzip

    from peftbench.estimate import ship_fits
    from peftbench.estimate.front_cache import fit_settings

    monkeypatch.setattr(ship_fits, "SHIPPED_FITS", tmp_path / "fits.json.gz")
    monkeypatch.setattr(ship_fits, "_entry", _stub_entry)
    assert ship_fits.main(["--models", "qwen2.5-0.5b", "--methods", "lora", "--jobs", "1"]) == 0
    with gzip.open(tmp_path / "fits.json.gz", "rt") as f:
        fits = json.load(f)["fits"]
    defaults = ship_fits.method_metadata()["lora"]["hyperparameters"]
    assert len(fits) == len(ship_fits.settings_for("lora")) == 20
    for fit in fits.values():
        assert fit["setting"] == fit_settings("lora", fit["fit"]["asked"], defaults)
    assert len({json.dumps(f["setting"], sort_keys=True) for f in fits.values()}) == 20
