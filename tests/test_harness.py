"""End-to-end runs on the real MiniLM encoder and real review data: records, resume, --force, adapters."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import read_records

FAMILY_METHODS = ["full", "lora", "adapter", "bitfit", "prompt_tuning", "prefix_tuning"]
RECORD_FIELDS = {
    "run_id", "suite", "task", "task_kind", "model", "architecture", "method", "family", "hyperparameters",
    "seed", "status", "metrics", "train_loss_curve", "trainable_params", "total_params", "memory",
    "train_seconds", "eval_seconds", "tokens_per_second", "adapter_bytes", "device", "versions", "prediction",
}


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    from peftbench.cli import main

    code = main(["run", "suite=smoke", "tasks=[rt_sentiment]", f"methods=[{','.join(FAMILY_METHODS)}]",
                 "train.max_steps=3", "--no-progress", "--results", str(root)])
    assert code == 0
    return root, read_records(root / "smoke" / "runs.jsonl")


def test_every_family_runs_and_records_every_field(family_run):
    _, records = family_run
    by_method = {r["method"]: r for r in records}
    assert set(by_method) == set(FAMILY_METHODS)
    for name in ["full", "lora", "adapter", "bitfit", "prompt_tuning"]:
        record = by_method[name]
        assert record["status"] == "ok", record.get("error")
        assert RECORD_FIELDS <= set(record), RECORD_FIELDS - set(record)
        assert 0 <= record["metrics"]["accuracy"] <= 100 and "macro_f1" in record["metrics"]
        assert len(record["train_loss_curve"]) == 3
        assert 0 < record["trainable_params"] <= record["total_params"]
        assert record["memory"]["peak_rss_train_bytes"] > record["memory"]["rss_at_start_bytes"]
        assert record["adapter_bytes"] > 0 and record["device"]["type"] == "cpu"
        assert {"python", "torch", "transformers", "peft", "datasets"} <= set(record["versions"])
        # jobs=auto: one single-threaded run per usable core, and every record says how many shared the CPU
        assert record["device"]["concurrent_runs"] == len(os.sched_getaffinity(0))
    assert {by_method[m]["family"] for m in FAMILY_METHODS} == {"full", "reparameterization", "adapter",
                                                                "selective", "soft_prompt"}
    # PEFT methods train a small fraction; full fine-tuning trains everything.
    assert by_method["full"]["trainable_params"] == by_method["full"]["total_params"]
    assert by_method["lora"]["trainable_params"] < 0.01 * by_method["lora"]["total_params"]
    assert by_method["lora"]["adapter_bytes"] < by_method["full"]["adapter_bytes"] / 50


def test_inapplicable_method_is_skipped_with_reason(family_run):
    _, records = family_run
    prefix = next(r for r in records if r["method"] == "prefix_tuning")
    assert prefix["status"] == "skipped" and "encoder" in prefix["error"]


def test_lora_adapter_reloads_with_peft(family_run, minilm_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, records = family_run
    lora = next(r for r in records if r["method"] == "lora")
    base = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2)
    model = PeftModel.from_pretrained(base, lora["adapter_path"]).eval()
    batch = AutoTokenizer.from_pretrained(minilm_dir)(["a fine film"], return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (1, 2)


def test_bottleneck_adapter_reloads(family_run, minilm_dir):
    from transformers import AutoModelForSequenceClassification

    from peftbench.methods.bottleneck import load_bottleneck

    _, records = family_run
    record = next(r for r in records if r["method"] == "adapter")
    base = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2)
    model = load_bottleneck(base, record["adapter_path"], "bert")
    assert sum("adapter_down" in n for n, _ in model.named_parameters()) == 2 * 6 * 2  # 2 sites x 6 layers x W,b


def test_rerun_skips_and_force_replaces(family_run, cli):
    root, records = family_run
    code, out, _ = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[prefix_tuning,bitfit]",
                       "train.max_steps=3", "--no-progress", "--results", str(root))
    assert code == 0 and "2 already recorded" in out
    assert read_records(root / "smoke" / "runs.jsonl") == records
    code, out, _ = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[prefix_tuning]",
                       "train.max_steps=3", "--force", "--no-progress", "--results", str(root))
    after = read_records(root / "smoke" / "runs.jsonl")
    assert code == 0 and len(after) == len(records)
    assert sorted(r["run_id"] for r in after) == sorted(r["run_id"] for r in records)


def test_runs_recorded_on_another_machine_are_measured_again_here(tmp_path, cli):
    """Committed reference results come from another machine: a fresh clone measures its own, and tables
    show one row per run (the newer record)."""
    argv = ["run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[bitfit]", "train.max_steps=1", "--no-progress",
            "--results", str(tmp_path)]
    assert cli(*argv)[0] == 0
    runs = tmp_path / "smoke" / "runs.jsonl"
    (record,) = read_records(runs)
    runs.write_text(json.dumps({**record, "machine_id": "elsewhere", "seed_note": "reference"}) + "\n")
    code, out, _ = cli(*argv)
    assert code == 0 and "1 ok" in out and "0 already recorded" in out
    assert [r["machine_id"] for r in read_records(runs)] == ["elsewhere", record["machine_id"]]
    from peftbench.results import load_table

    table = load_table([runs])
    assert len(table) == 1 and "seed_note" not in table.columns  # the newer record only
    code, out, _ = cli(*argv)
    assert "1 already recorded on this machine" in out


def test_results_command_exports_tidy_table(family_run, cli, tmp_path):
    import pandas as pd

    root, records = family_run
    code, out, _ = cli("results", "suite=smoke", "--results", str(root))
    assert code == 0 and "lora" in out and "accuracy" in out
    code, _, _ = cli("results", "suite=smoke", "--format", "parquet", "-o", str(tmp_path / "t.parquet"),
                     "--results", str(root))
    table = pd.read_parquet(tmp_path / "t.parquet")
    assert code == 0 and len(table) == len(records) and "metrics.accuracy" in table.columns


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    """Kill the suite mid-flight (twice), resume, and check every planned run is recorded exactly once."""
    argv = [sys.executable, "-m", "peftbench", "run", "suite=smoke", "tasks=[rt_sentiment]",
            "methods=[lora,bitfit,ia3]", "train.max_steps=2", "--no-progress", "--results", str(tmp_path)]
    results = tmp_path / "smoke" / "runs.jsonl"
    rng = random.Random(7)
    for _ in range(2):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(6, 20))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if results.exists():
            [json.loads(line) for line in results.read_text().splitlines()]  # always parses
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = read_records(results)
    assert sorted(r["method"] for r in records) == ["bitfit", "ia3", "lora"]
    assert len({r["run_id"] for r in records}) == 3


def test_failing_and_timed_out_runs_are_recorded_and_the_suite_goes_on(cli, tmp_path):
    # peft rejects a target module that matches nothing: that run fails, the next one still runs.
    code, out, _ = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[lora,bitfit]",
                       "methods.lora.target_modules=[no_such_module]", "train.max_steps=1", "--no-progress",
                       "--results", str(tmp_path))
    records = {r["method"]: r for r in read_records(tmp_path / "smoke" / "runs.jsonl")}
    assert code == 0
    assert records["lora"]["status"] == "failed" and "No modules were targeted" in records["lora"]["error"]
    assert records["bitfit"]["status"] == "ok"
    code, _, _ = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[ia3]", "timeout=0.5",
                     "--no-progress", "--results", str(tmp_path))
    timed_out = read_records(tmp_path / "smoke" / "runs.jsonl")[-1]
    assert code == 0 and timed_out["method"] == "ia3" and timed_out["status"] == "timeout"
