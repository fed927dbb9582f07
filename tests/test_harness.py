"""End-to-end runs on the real MiniLM encoder and real review data: records, resume, --force, adapters."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_records, worker_pids

FAMILY_METHODS = ["full", "lora", "adapter", "bitfit", "prompt_tuning", "prefix_tuning"]
RECORD_FIELDS = {
    "run_id", "suite", "task", "task_kind", "model", "architecture", "method", "family", "hyperparameters",
    "seed", "status", "metrics", "train_loss_curve", "trainable_params", "total_params", "memory",
    "train_seconds", "eval_seconds", "tokens_per_second", "adapter_bytes", "device", "versions", "prediction",
}


FAMILY_OVERRIDES = ["suite=smoke", "tasks=[rt_sentiment]", f"methods=[{','.join(FAMILY_METHODS)}]", "train.max_steps=3"]


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    from peftbench.cli import main

    code = main(["run", *FAMILY_OVERRIDES, "--no-progress", "--results", str(root)])
    assert code == 0
    return root, read_records(root / "smoke" / "runs.jsonl")


def test_every_family_runs_and_records_every_field(family_run):
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan

    _, records = family_run
    plan = build_plan(parse_overrides(FAMILY_OVERRIDES))
    expected_concurrency = min(plan.jobs, len(plan.specs))
    assert plan.jobs == len(os.sched_getaffinity(0)) // plan.specs[0].train.threads
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
        # jobs=auto: one single-threaded run per usable core (no more than there are runs), and every record
        # says how many shared the CPU
        assert record["device"]["concurrent_runs"] == expected_concurrency
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
    lines = (root / "smoke" / "runs.jsonl").read_text().splitlines()
    code, out, _ = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[prefix_tuning]",
                       "train.max_steps=3", "--force", "--no-progress", "--results", str(root))
    after = read_records(root / "smoke" / "runs.jsonl")
    assert code == 0 and "1 skipped; 0 already recorded" in out and len(after) == len(records)
    assert sorted(r["run_id"] for r in after) == sorted(r["run_id"] for r in records)
    # --force really reran it: the record was rewritten (a later finish), the others left byte for byte.
    old = next(r for r in records if r["method"] == "prefix_tuning")
    new = next(r for r in after if r["method"] == "prefix_tuning")
    assert new["finished_at"] > old["finished_at"] and new != old
    after_lines = (root / "smoke" / "runs.jsonl").read_text().splitlines()
    assert [line for line in lines if json.loads(line)["method"] != "prefix_tuning"] == after_lines[:-1]


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


def _parsed_records(path) -> list[dict]:
    """Every line of a runs file, which must all be whole run records."""
    from peftbench.record import not_a_record

    lines = path.read_text().splitlines() if path.exists() else []
    records = [json.loads(line) for line in lines]
    assert not [r for r in records if not_a_record(r)], records
    return records


def _wait_for_records(path, count: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and len(path.read_text().splitlines()) >= count):
        assert proc.poll() is None and time.monotonic() < deadline, "the suite ended before the kill"
        time.sleep(0.1)


def test_sigkill_after_records_exist_loses_and_duplicates_nothing(tmp_path):
    """Kill the suite twice, each time after records exist (at a random moment in a later run), the first
    time the driver alone (its worker must stop by itself, its temporary folder is swept by the next run),
    the second its whole process group. The file always parses, and each resume runs exactly the rest."""
    methods = ["lora", "bitfit", "ia3"]
    results, scratch = tmp_path / "results" / "smoke" / "runs.jsonl", tmp_path / "tmp"
    scratch.mkdir()
    argv = [sys.executable, "-m", "peftbench", "run", "suite=smoke", "tasks=[rt_sentiment]",
            f"methods=[{','.join(methods)}]", "sizes.train=16", "sizes.eval=8", "train.max_steps=2", "jobs=1",
            "--no-progress", "--results", str(tmp_path / "results")]
    env = {**os.environ, "TMPDIR": str(scratch)}
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for trial, whole_group in enumerate((False, True), start=1):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            _wait_for_records(results, trial, proc)  # trial 2 is itself a resume, killed after its own record
            time.sleep(rng.uniform(0, 3))  # into the next run: loading, training, evaluating or recording
        finally:
            if whole_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
        deadline = time.monotonic() + 30
        while worker_pids(session=proc.pid):  # an orphaned worker notices its driver is gone and exits
            assert time.monotonic() < deadline, "an orphaned worker kept running"
            time.sleep(0.2)
        records = _parsed_records(results)
        assert trial <= len(records) < len(methods), f"seed {seed}: {len(records)} records after kill {trial}"
        assert len({r["run_id"] for r in records}) == len(records), f"seed {seed}: a run recorded twice"
    before = results.read_text()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = results.read_text()
    records = _parsed_records(results)
    assert after.startswith(before), f"seed {seed}: the resume rewrote earlier records"
    assert sorted(r["method"] for r in records) == sorted(methods), f"seed {seed}"
    assert len({r["run_id"] for r in records}) == len(methods), f"seed {seed}: a run recorded twice"
    assert list(scratch.glob("peftbench-run-*")) == [], "the killed driver's temporary folder was not swept"


def test_failing_and_timed_out_runs_are_recorded_and_the_suite_goes_on(cli, tmp_path, minilm_dir):
    # A model folder whose config is sound (so the plan-time checks pass) but whose weights are damaged: the
    # run fails inside its worker, is recorded with its error, and the next run still runs.
    broken = tmp_path / "broken-minilm"
    broken.mkdir()
    for item in Path(minilm_dir).iterdir():
        if item.is_file() and item.name != "model.safetensors":
            (broken / item.name).write_bytes(item.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file" * 64)
    code, out, _ = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[lora,bitfit]", f"model={broken}",
                       "train.max_steps=1", "--no-progress", "--results", str(tmp_path))
    records = {r["method"]: r for r in read_records(tmp_path / "smoke" / "runs.jsonl")}
    assert code == 0
    assert set(records) == {"lora", "bitfit"}
    assert all(r["status"] == "failed" and r["error"] for r in records.values())
    code, _, _ = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[ia3]", "timeout=0.5",
                     "--no-progress", "--results", str(tmp_path))
    timed_out = read_records(tmp_path / "smoke" / "runs.jsonl")[-1]
    assert code == 0 and timed_out["method"] == "ia3" and timed_out["status"] == "timeout"
