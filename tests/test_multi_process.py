"""Runs over several processes (`gpus_per_run=2`, gloo on this CPU): the same loss curve as one process with the
same effective batch, every rank's peak and step time in rank 0's record, a killed rank recorded as failed while
the suite goes on, bad overrides refused before anything runs. The issue's SmolLM2 check, DDP's curve and a run
through Ray Train are slow."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import read_records

PLAN = ["suite=smoke", "tasks=[rt_sentiment]", "sizes.train=16", "sizes.eval=8", "train.max_steps=2",
        "train.batch_size=4"]
# Two ranks of micro-batch 4 cover, in each step, the same two micro-batches as one process accumulating two
# (`training.rank_batches`): the losses differ only by the order of floating-point sums (measured: identical
# to the 5 decimals recorded, on MiniLM and on SmolLM2 full fine-tuning).
LOSS_TOLERANCE = 1e-4
ONE_PROCESS = ["train.gradient_accumulation_steps=2"]
# The estimator's per-rank peak against the measured one (its stated error on this CPU is within 10%,
# benchmarks/distributed_accuracy.md).
PEAK_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def dropout_free_minilm(tmp_path_factory, minilm_dir) -> str:
    """MiniLM with dropout off. Each rank draws dropout masks from its own generator, so only a model without
    dropout can follow the one-process curve step for step (SmolLM2 has none)."""
    folder = tmp_path_factory.mktemp("minilm-no-dropout")
    for item in Path(minilm_dir).iterdir():
        if item.is_file() and item.name != "config.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((Path(minilm_dir) / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def _run(root: Path, *overrides: str) -> int:
    from peftbench.cli import main

    return main(["run", *overrides, "--no-progress", "--results", str(root)])


@pytest.fixture(scope="module")
def fsdp_beside_one_process(dropout_free_minilm, tmp_path_factory):
    root = tmp_path_factory.mktemp("multi-process")
    model = f"model={dropout_free_minilm}"
    assert _run(root, *PLAN, model, "methods=[full]", *ONE_PROCESS) == 0
    assert _run(root, *PLAN, model, "methods=[full]", "gpus_per_run=2", "strategy=fsdp") == 0
    one, fsdp = read_records(root / "smoke" / "runs.jsonl")
    return root, one, fsdp


def _losses(record: dict) -> list[float]:
    return [loss for _, loss in record["train_loss_curve"]]


def test_fsdp_follows_the_one_process_loss_curve_and_evaluates_the_same_weights(fsdp_beside_one_process):
    _, one, fsdp = fsdp_beside_one_process
    assert one["status"] == fsdp["status"] == "ok", fsdp.get("error")
    assert len(_losses(fsdp)) == 2
    assert max(abs(a - b) for a, b in zip(_losses(one), _losses(fsdp), strict=True)) <= LOSS_TOLERANCE
    assert fsdp["metrics"] == one["metrics"]  # rank 0 evaluated the gathered weights
    assert fsdp["effective_batch_size"] == one["effective_batch_size"] == 8
    assert fsdp["train_tokens"] == one["train_tokens"]


def test_rank_zero_records_every_ranks_peak_and_step_time(fsdp_beside_one_process):
    _, one, fsdp = fsdp_beside_one_process
    assert one["world_size"] == 1 and "strategy" not in one and "ranks" not in one
    assert (fsdp["world_size"], fsdp["strategy"], fsdp["offload"]) == (2, "fsdp", "none")
    assert fsdp["train_config"]["world_size"] == 2  # part of the run id and of the configuration id
    assert fsdp["run_id"] != one["run_id"] and fsdp["config_id"] != one["config_id"]
    assert [r["rank"] for r in fsdp["ranks"]] == [0, 1]
    predicted = fsdp["prediction"]["peak_bytes"]
    assert fsdp["prediction"]["world_size"] == 2 and fsdp["prediction"]["strategy"] == "fsdp"
    assert predicted < fsdp["prediction"]["single_process_peak_bytes"]
    for rank in fsdp["ranks"]:
        memory = rank["memory"]
        measured = memory["peak_rss_train_bytes"] - memory["rss_before_load_bytes"]
        assert abs(predicted - measured) / measured <= PEAK_TOLERANCE, (rank["rank"], predicted, measured)
        assert rank["seconds_per_step"] > 0 and rank["train_tokens"] > 0
    assert fsdp["seconds_per_step"] == max(r["seconds_per_step"] for r in fsdp["ranks"])


def test_a_rerun_skips_a_recorded_multi_process_run(fsdp_beside_one_process, dropout_free_minilm, cli):
    root, _, _ = fsdp_beside_one_process
    code, out, _ = cli("run", *PLAN, f"model={dropout_free_minilm}", "methods=[full]", "gpus_per_run=2",
                       "strategy=fsdp", "--no-progress", "--results", str(root))
    assert code == 0 and "nothing new; 1 already recorded" in out


def test_gpus_per_run_1_is_the_plain_run_with_world_size_1():
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan
    from peftbench.runs.spec import base_record

    (plain,) = build_plan(parse_overrides([*PLAN, "methods=[lora]"])).specs
    (one,) = build_plan(parse_overrides([*PLAN, "methods=[lora]", "gpus_per_run=1"])).specs
    assert one == plain and base_record(one)["world_size"] == 1
    (ddp,) = build_plan(parse_overrides([*PLAN, "methods=[lora]", "gpus_per_run=2"])).specs
    (fsdp,) = build_plan(parse_overrides([*PLAN, "methods=[lora]", "gpus_per_run=2", "strategy=fsdp"])).specs
    assert ddp.processes.strategy == "ddp" and len({plain.run_id, ddp.run_id, fsdp.run_id}) == 3


BAD = [
    ("gpus_per_run=0", "gpus_per_run must be a whole number of processes from 1 to 1024"),
    ("gpus_per_run=two", "gpus_per_run must be a whole number"),
    ("gpus_per_run=true", "gpus_per_run must be a whole number"),
    ("strategy=fsdp", "strategy only apply with gpus_per_run=2 or more"),
    ("gpus_per_run=1 offload=none", "offload only apply with gpus_per_run=2 or more"),
    ("gpus_per_run=2 strategy=tp", "strategy must be one of ddp, fsdp, zero2, zero3"),
    ("gpus_per_run=2 offload=disk", "offload must be one of none, optimizer, params"),
    ("gpus_per_run=2 strategy=ddp offload=params", "ddp cannot offload params"),
    ("gpus_per_run=2 strategy=fsdp offload=params", "with device=cpu there is nothing to offload"),
]


@pytest.mark.parametrize("override, message", BAD)
def test_bad_multi_process_overrides_are_refused_before_anything_runs(cli, tmp_path, override, message):
    code, _, err = cli("run", *PLAN, "methods=[lora]", *override.split(), "--results", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "smoke").exists()


@pytest.mark.parametrize("strategy", ["zero2", "zero3"])
def test_deepspeed_strategies_say_what_is_missing(cli, tmp_path, strategy):
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("DeepSpeed is installed here")
    code, _, err = cli("run", *PLAN, "methods=[lora]", "gpus_per_run=2", f"strategy={strategy}",
                       "--results", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "needs DeepSpeed, which is not installed" in err
    assert not (tmp_path / "smoke").exists()


def _rank_pids(rank: int) -> list[int]:
    """This test process's descendants running `peftbench.runs.rank` as rank `rank` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"peftbench.runs.rank" in argv and f"RANK={rank}".encode() in environ and _descends(int(entry.name)):
            found.append(int(entry.name))
    return found


def _descends(pid: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == os.getpid():
            return True
    return False


def test_a_killed_rank_is_recorded_failed_in_bounded_time_and_the_suite_goes_on(tmp_path):
    """SIGKILL rank 1 of the first run as rank 0 reports its first step: that run is recorded `failed`, naming
    the rank, within two minutes; the next run trains."""
    from peftbench.overrides import parse_overrides
    from peftbench.runs.executor import LocalExecutor
    from peftbench.runs.plan import build_plan
    from peftbench.runs.runner import run_plan

    plan = build_plan(parse_overrides([*PLAN, "methods=[bitfit,ia3]", "gpus_per_run=2", "jobs=1"]))
    first = plan.specs[0]
    killed_at: list[float] = []
    recorded_at: dict[str, float] = {}

    class KillingRankOne(LocalExecutor):
        def execute(self, specs, artifacts_dir, on_record, on_event=None):
            def hook(spec, event):
                if spec.run_id == first.run_id and event.get("event") == "step" and not killed_at:
                    (pid,) = _rank_pids(1)
                    os.kill(pid, signal.SIGKILL)
                    killed_at.append(time.monotonic())

            def record(spec, rec):
                recorded_at[spec.run_id] = time.monotonic()
                on_record(spec, rec)

            super().execute(specs, artifacts_dir, record, hook)

    summary = run_plan(plan, tmp_path, executor=KillingRankOne(plan.timeout, plan.jobs), show_progress=False)
    records = {r["method"]: r for r in read_records(summary.results_file)}
    killed = records[first.method]
    assert killed_at and killed["status"] == "failed" and killed["failed_rank"] == 1, killed.get("error")
    assert killed["error"].startswith("rank 1 of 2 killed by signal 9") and killed["world_size"] == 2
    print(f"killed rank recorded {recorded_at[first.run_id] - killed_at[0]:.1f} s after the kill")
    assert recorded_at[first.run_id] - killed_at[0] < 120
    other = next(r for m, r in records.items() if m != first.method)
    assert other["status"] == "ok" and other["world_size"] == 2
    assert not _rank_pids(0) and not _rank_pids(1)


@pytest.mark.slow
def test_ddp_follows_the_one_process_loss_curve(fsdp_beside_one_process, dropout_free_minilm):
    root, one, _ = fsdp_beside_one_process
    assert _run(root, *PLAN, f"model={dropout_free_minilm}", "methods=[full]", "gpus_per_run=2") == 0
    ddp = read_records(root / "smoke" / "runs.jsonl")[-1]
    assert ddp["status"] == "ok" and ddp["strategy"] == "ddp" and ddp["metrics"] == one["metrics"]
    assert max(abs(a - b) for a, b in zip(_losses(one), _losses(ddp), strict=True)) <= LOSS_TOLERANCE


# LoRA's dropout (0.05) draws its masks from each rank's own generator: the curves part by that noise alone
# (measured on the issue's check: at most 0.0012 in losses of 2.9-4.2, 0.03%).
DROPOUT_TOLERANCE = 0.01
ISSUE_CHECK = ["suite=smoke", "tasks=[constitution_title]", "methods=[full,lora]", "device=cpu", "sizes.train=16",
               "sizes.eval=8", "train.max_steps=4"]


@pytest.mark.slow
def test_the_smollm2_check_fsdp_beside_one_process(tmp_path):
    """The issue's command on SmolLM2-135M (about 10 minutes here for the two FSDP runs, 6 for the others)."""
    assert _run(tmp_path, *ISSUE_CHECK, "gpus_per_run=2", "strategy=fsdp") == 0
    assert _run(tmp_path, *ISSUE_CHECK, *ONE_PROCESS) == 0
    records = {(r["method"], r["world_size"]): r for r in read_records(tmp_path / "smoke" / "runs.jsonl")}
    for method, tolerance in (("full", LOSS_TOLERANCE), ("lora", DROPOUT_TOLERANCE)):
        one, fsdp = records[(method, 1)], records[(method, 2)]
        assert one["status"] == fsdp["status"] == "ok", fsdp.get("error")
        assert max(abs(a - b) for a, b in zip(_losses(one), _losses(fsdp), strict=True)) <= tolerance
        for rank in fsdp["ranks"]:
            measured = rank["memory"]["peak_rss_train_bytes"] - rank["memory"]["rss_before_load_bytes"]
            assert abs(fsdp["prediction"]["peak_bytes"] - measured) / measured <= PEAK_TOLERANCE


@pytest.mark.slow
def test_a_two_worker_run_through_ray_train(dropout_free_minilm, fsdp_beside_one_process, tmp_path):
    """One run of two Ray Train workers on a local Ray instance (about 1.5 minutes here)."""
    ray = pytest.importorskip("ray")
    _, one, _ = fsdp_beside_one_process
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1", object_store_memory=256 * 2**20)
    try:
        code = _run(tmp_path, *PLAN, f"model={dropout_free_minilm}", "methods=[full]", "gpus_per_run=2",
                    "strategy=fsdp", "executor=ray")
    finally:
        ray.shutdown()
    (record,) = read_records(tmp_path / "smoke" / "runs.jsonl")
    assert code == 0 and record["status"] == "ok", record.get("error")
    assert record["world_size"] == 2 and record["ray"]["train_workers"] == 2 and len(record["ranks"]) == 2
    assert max(abs(a - b) for a, b in zip(_losses(one), _losses(record), strict=True)) <= LOSS_TOLERANCE
