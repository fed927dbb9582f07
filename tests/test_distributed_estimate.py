"""Multi-GPU estimates (`--gpus N --strategy …`): sharding arithmetic on top of the single-GPU answer.

All cases answer from the shipped Llama-3.1-8B shape fits (no torch import, well under a second each).
"""

from __future__ import annotations

import json

import pytest

from peftbench.estimate.distributed import DistributedPlan, check_plan
from peftbench.estimate.multi_gpu import smallest_fit

P = 8_030_261_248  # Llama-3.1-8B parameters
GPUS = 4
BASE = ("estimate", "--model", "llama-3.1-8b", "--hardware", "a100-40gb,h100-80gb", "--json")


@pytest.fixture(scope="module")
def answers():
    """(method, strategy, offload) -> the CLI's JSON; the 1-GPU answers under strategy None."""
    from peftbench.cli import main

    out = {}
    import contextlib
    import io

    for method in ("full", "lora"):
        for strategy, offload in ((None, None), ("ddp", None), ("fsdp", None), ("zero2", None), ("zero3", None),
                                  ("zero3", "optimizer"), ("zero2", "optimizer")):
            extra = () if strategy is None else ("--gpus", str(GPUS), "--strategy", strategy)
            extra += () if offload is None else ("--offload", offload)
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                assert main([*BASE, "--method", method, *extra]) == 0
            out[method, strategy, offload] = json.loads(buffer.getvalue())
    return out


def _states(a: dict) -> int:
    return a["breakdown"]["weights"] + a["breakdown"]["optimizer_states"]


def test_fsdp_per_gpu_peak_is_below_one_gpu_and_model_states_are_sharded(answers):
    one, fsdp = answers["full", None, None], answers["full", "fsdp", None]
    assert fsdp["per_gpu_peak_bytes"] == fsdp["peak_bytes"] < one["peak_bytes"]
    assert fsdp["single_gpu_peak_bytes"] == one["peak_bytes"]
    assert (fsdp["gpus"], fsdp["strategy"], fsdp["offload"]) == (GPUS, "fsdp", "none")
    # bf16 full fine-tune: weights 2 B/param (+ buffers, as traced at the optimizer step), grads 2 B, AdamW
    # states 2 x 2 B; DDP holds them whole, FSDP holds 1/N of each
    weights = answers["full", "ddp", None]["model_states_bytes_per_gpu"] - 6 * P
    assert weights == pytest.approx(2 * P, rel=1e-4)
    assert fsdp["model_states_bytes_per_gpu"] == weights // GPUS + 2 * P // GPUS + 4 * P // GPUS
    ring = (GPUS - 1) / GPUS
    assert fsdp["communication"]["reduce_scatter_gradients"] == int(ring * 2 * P)
    assert fsdp["communication"]["all_gather_parameters_forward"] == int(ring * one["breakdown"]["weights"])
    for profile in fsdp["profiles"].values():
        assert {"fits", "step_seconds"} <= set(profile)
    assert fsdp["profiles"]["h100-80gb"]["fits"] and not one["profiles"]["h100-80gb"]["fits"]


def test_ddp_keeps_model_states_whole_and_adds_the_gradient_buckets(answers):
    one, ddp = answers["full", None, None], answers["full", "ddp", None]
    assert ddp["model_states_bytes_per_gpu"] == pytest.approx(one["breakdown"]["weights"] + 2 * P + 4 * P, rel=1e-5)
    assert ddp["breakdown"]["buckets"] == 2 * P  # gradient_as_bucket_view=False: a second gradient copy
    assert ddp["peak_bytes"] > one["peak_bytes"]
    assert ddp["communication_bytes_per_step"] == int(2 * (GPUS - 1) / GPUS * 2 * P)


def test_zero2_shards_gradients_and_optimizer_zero3_parameters_too(answers):
    z2, z3 = answers["full", "zero2", None], answers["full", "zero3", None]
    # DeepSpeed: 16-bit params (replicated in stage 2) + 2 (grads16) + 4 (grads32) + 4 (master) + 8 (Adam) / N
    assert z2["model_states_bytes_per_gpu"] == pytest.approx(2 * P + 18 * P / GPUS, rel=1e-3)
    assert z2["breakdown"]["weights"] == pytest.approx(answers["full", None, None]["breakdown"]["weights"], rel=1e-5)
    assert z3["breakdown"]["weights"] == z2["breakdown"]["weights"] // GPUS
    assert z3["model_states_bytes_per_gpu"] < z2["model_states_bytes_per_gpu"]


def test_lora_shards_only_trainable_states(answers):
    one, z2, fsdp = answers["lora", None, None], answers["lora", "zero2", None], answers["lora", "fsdp", None]
    t = one["trainable_params"]
    assert z2["breakdown"]["weights"] == one["breakdown"]["weights"]  # frozen base replicated under ZeRO-2
    assert fsdp["breakdown"]["weights"] == one["breakdown"]["weights"] // GPUS  # and sharded under FSDP
    assert z2["communication"]["reduce_scatter_gradients"] == int((GPUS - 1) / GPUS * 2 * t)
    # the frozen base is all-gathered in forward and backward under FSDP: far more traffic than the adapters
    assert fsdp["communication_bytes_per_step"] > 100 * z2["communication_bytes_per_step"]


def test_offload_moves_optimizer_states_off_the_gpu(answers):
    for stage in ("zero2", "zero3"):
        kept, moved = answers["full", stage, None], answers["full", stage, "optimizer"]
        assert moved["breakdown"]["optimizer_states"] == 0 < kept["breakdown"]["optimizer_states"]
        assert moved["offloaded_bytes_per_gpu"] > 0 == kept["offloaded_bytes_per_gpu"]
        assert moved["peak_bytes"] < kept["peak_bytes"]
        assert moved["profiles"]["h100-80gb"]["step_seconds"] > kept["profiles"]["h100-80gb"]["step_seconds"]


def test_one_gpu_without_a_strategy_is_the_plain_answer(cli):
    code, plain, _ = cli(*BASE, "--method", "lora")
    code1, one, _ = cli(*BASE, "--method", "lora", "--gpus", "1")
    assert code == code1 == 0 and json.loads(plain) == json.loads(one)


@pytest.mark.parametrize("argv, expected", [
    (("--gpus", "4", "--strategy", "zero4"), "unknown strategy 'zero4'"),
    (("--gpus", "0", "--strategy", "fsdp"), "--gpus must be"),
    (("--gpus", "x"), "invalid int value"),
    (("--gpus", "2", "--strategy", "ddp", "--offload", "optimizer"), "ddp cannot offload"),
    (("--gpus", "2", "--strategy", "fsdp", "--offload", "disk"), "unknown offload 'disk'"),
])
def test_bad_plan_is_one_line_exit_2(cli, argv, expected):
    code, _, err = cli(*BASE, "--method", "full", *argv)
    assert code == 2 and expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_check_plan_defaults_and_smallest_fit():
    assert check_plan(4, None, None) == DistributedPlan(4, "ddp", "none")
    fit = smallest_fit("llama-3.1-8b", "full", "a100-40gb", batch_size=1, seq_len=512)
    assert fit is not None and fit.gpus > 1 and fit.strategy in ("zero2", "fsdp", "zero3")
    assert smallest_fit("llama-3.1-8b", "lora", "h100-80gb", batch_size=1, seq_len=512).gpus == 1
