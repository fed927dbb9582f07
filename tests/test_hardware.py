"""Hardware catalogue: memory-class matching, bf16 support, the CPU profile and the `hardware` command."""

from __future__ import annotations

import json

import pytest

from peftbench.errors import UserError
from peftbench.hardware import gpu_profiles, match_memory_class, resolve


def test_catalogue_covers_the_issue_cards_with_sources():
    names = set(gpu_profiles())
    assert {"t4", "l4", "a10g", "rtx3090", "rtx4090", "l40s", "a100-40gb", "a100-80gb", "h100-80gb", "h200"} <= names
    for profile in gpu_profiles().values():
        assert profile.source and profile.memory_bytes > 0 and profile.bandwidth_gbs > 0
        assert profile.tflops["fp32"] > 0


def test_16gb_means_the_conservative_16gb_card():
    assert match_memory_class("16GB").name == "t4"
    assert list(resolve(["16gb"])) == ["t4"]


def test_24gb_picks_the_card_with_least_memory_then_least_compute():
    chosen = match_memory_class("24 GB")
    peers = [p for p in gpu_profiles().values() if p.nominal_gb == 24]
    assert len(peers) >= 3
    assert chosen.memory_bytes == min(p.memory_bytes for p in peers)


def test_t4_has_no_bf16_and_falls_back_to_fp16():
    t4 = gpu_profiles()["t4"]
    assert not t4.bf16_supported
    assert t4.precision("bf16") == "fp16"
    assert t4.peak_flops("bf16") == t4.peak_flops("fp16")
    assert gpu_profiles()["a100-80gb"].precision("bf16") == "bf16"


@pytest.mark.parametrize("bad", ["7GB", "lots", "h900"])
def test_unknown_hardware_is_a_user_error(bad):
    with pytest.raises(UserError):
        resolve([bad])


def test_cpu_profile_reads_this_machine(tmp_path, monkeypatch):
    import os

    from peftbench.hardware.cpu import cpu_profile

    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))
    profile = cpu_profile(threads=1)
    assert profile.kind == "cpu" and str(os.cpu_count()) in profile.title
    assert profile.memory_bytes > 2**30 and profile.tflops["fp32"] > 0 and profile.bandwidth_gbs > 0
    assert (tmp_path / "hardware" / "cpu.json").is_file()  # measured once, then cached
    assert cpu_profile(threads=1) == profile


def test_hardware_command_lists_profiles(cli):
    code, out, _ = cli("hardware")
    assert code == 0 and "t4" in out and "no (fp16 AMP)" in out and "cpu" in out
    code, out, _ = cli("hardware", "--json")
    assert code == 0 and json.loads(out)["h100-80gb"]["bf16_supported"] is True


def test_estimate_on_t4_switches_to_fp16(cli):
    code, out, err = cli("estimate", "--model", "minilm", "--method", "lora", "--task-kind", "classification",
                         "--batch-size", "2", "--seq-len", "32", "--gpu", "16GB", "--json")
    assert code == 0, err
    t4 = json.loads(out)["profiles"]["t4"]
    assert t4["precision"] == "fp16" and "no bf16" in t4["note"]


def test_a_card_is_found_by_its_plain_name_unless_ambiguous():
    assert list(resolve(["H100"])) == ["h100-80gb"]  # "--hardware h100" is how people say it
    with pytest.raises(UserError, match="ambiguous.*a100-40gb.*a100-80gb"):
        resolve(["a100"])
