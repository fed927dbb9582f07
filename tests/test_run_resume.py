"""Resume, retry, concurrency, interruption and determinism of `peftbench run`, with real tiny runs (MiniLM,
16 training examples, 2 steps: each run costs a worker start and a few seconds of CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import read_records, worker_pids

REPO = Path(__file__).resolve().parent.parent
TINY = ["suite=smoke", "tasks=[rt_sentiment]", "sizes.train=16", "sizes.eval=8", "train.max_steps=2"]


def tiny(methods: str, root: Path, *extra: str) -> list[str]:
    return ["run", *TINY, f"methods=[{methods}]", *extra, "--no-progress", "--results", str(root)]


def planned_records(methods: str, status: dict[str, str]) -> dict[str, dict]:
    """Records for the tiny plan's real run ids, with the given statuses (no training)."""
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan
    from peftbench.runs.spec import base_record

    plan = build_plan(parse_overrides([*TINY, f"methods=[{methods}]"]))
    return {s.method: {**base_record(s), "status": status[s.method], "finished_at": "2000-01-01T00:00:00Z",
                       "error": None if status[s.method] == "ok" else "made up for the test"} for s in plan.specs}


def test_retry_failed_reruns_only_unfinished_runs_past_garbage_lines(tmp_path, cli):
    """`--retry-failed` reruns the failed run only (not the ok or skipped ones) and its new record replaces
    the old; lines that are not records neither stop the resume nor get deleted."""
    from peftbench.methods import get_method

    records = planned_records("bitfit,lora,prefix_tuning", {"bitfit": "ok", "lora": "failed",
                                                             "prefix_tuning": "skipped"})
    records["prefix_tuning"]["applicability"] = get_method("prefix_tuning").applicability  # a current skip
    runs = tmp_path / "smoke" / "runs.jsonl"
    runs.parent.mkdir(parents=True)
    runs.write_text("\n".join(["[]", json.dumps(records["bitfit"]), "null", json.dumps(records["lora"]), "{}",
                               json.dumps(records["prefix_tuning"])]) + "\n")
    before = runs.read_text().splitlines()
    code, out, err = cli(*tiny("bitfit,lora,prefix_tuning", tmp_path))
    assert code == 0 and "nothing new; 3 already recorded" in out, out + err
    assert "line 1" in err and "line 3" in err and "line 5" in err
    code, out, err = cli(*tiny("bitfit,lora,prefix_tuning", tmp_path), "--retry-failed")
    assert code == 0 and "1 ok; 2 already recorded" in out, out + err
    after = runs.read_text().splitlines()
    assert len(after) == 6 and after[:5] == [line for line in before if line != before[3]]  # the rest untouched
    (rerun,) = [r for r in read_records(runs) if isinstance(r, dict) and r.get("method") == "lora"]
    assert rerun["status"] == "ok" and rerun["run_id"] == records["lora"]["run_id"]
    assert rerun["finished_at"] != records["lora"]["finished_at"]


def test_a_skip_recorded_before_the_method_could_apply_is_retried_once(tmp_path, cli):
    """A run recorded `skipped` by an older revision of the method's applicability (prefix tuning before it
    could decode) is run again on resume, its new record replacing the old; a skip by the current revision
    stands, so the next resume runs nothing."""
    records = planned_records("lora,prefix_tuning", {"lora": "ok", "prefix_tuning": "skipped"})
    runs = tmp_path / "smoke" / "runs.jsonl"
    runs.parent.mkdir(parents=True)
    runs.write_text("".join(json.dumps(records[m]) + "\n" for m in ("lora", "prefix_tuning")))
    code, out, err = cli(*tiny("lora,prefix_tuning", tmp_path))
    assert code == 0 and "1 already recorded" in out, out + err  # lora stands; the old skip is redone
    after = read_records(runs)
    assert [r["method"] for r in after] == ["lora", "prefix_tuning"] and after[0] == records["lora"]
    redone = after[1]
    assert redone["status"] == "skipped" and "encoder-only" in redone["error"]  # MiniLM: still a real skip
    assert redone["applicability"] == 2 and redone["run_id"] == records["prefix_tuning"]["run_id"]
    code, out, err = cli(*tiny("lora,prefix_tuning", tmp_path))
    assert code == 0 and "nothing new; 2 already recorded" in out, out + err


def test_a_campaign_id_resumes_across_machines_and_a_bad_one_is_refused(tmp_path, cli, monkeypatch):
    """`$PEFTBENCH_MACHINE_ID` continues runs another machine recorded under that id (the reference runs move
    between fresh machines); without it, this machine's own id does not count them as its own; a malformed
    id is bad input: one line, exit 2, nothing written."""
    from peftbench.telemetry import machine_id

    record = {**planned_records("lora", {"lora": "ok"})["lora"], "machine_id": "campaign-1"}
    runs = tmp_path / "smoke" / "runs.jsonl"
    runs.parent.mkdir(parents=True)
    runs.write_text(json.dumps(record) + "\n")
    monkeypatch.setenv("PEFTBENCH_MACHINE_ID", "campaign-1")
    assert machine_id() == "campaign-1"
    code, out, err = cli(*tiny("lora", tmp_path))
    assert code == 0 and "nothing new; 1 already recorded" in out, out + err
    monkeypatch.delenv("PEFTBENCH_MACHINE_ID")
    assert machine_id() != "campaign-1"
    from peftbench.results import ResultStore
    assert ResultStore(runs).latest(machine=machine_id()) == {}  # here, the run would be measured again
    monkeypatch.setenv("PEFTBENCH_MACHINE_ID", "../etc\nx")
    fresh = tmp_path / "fresh"
    code, out, err = cli(*tiny("lora", fresh))
    assert code == 2 and err.count("\n") == 1 and "PEFTBENCH_MACHINE_ID" in err, err
    assert not fresh.exists()


def test_two_concurrent_drivers_share_the_plan_and_record_each_run_once(tmp_path):
    argv = [sys.executable, "-m", "peftbench", *tiny("lora,bitfit,ia3", tmp_path, "jobs=1")]
    drivers = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [d.communicate(timeout=600) for d in drivers]
    assert all(d.returncode == 0 for d in drivers), outputs
    records = read_records(tmp_path / "smoke" / "runs.jsonl")
    assert sorted(r["method"] for r in records) == ["bitfit", "ia3", "lora"]
    assert len({r["run_id"] for r in records}) == 3 and all(r["status"] == "ok" for r in records)
    ran = [int(out.split(" ok;")[0].split()[-1]) if " ok;" in out else 0 for out, _ in outputs]
    assert sum(ran) == 3, outputs  # no run was trained twice, and the work was shared out
    assert all("run by another `peftbench run`" in out for out, _ in outputs if ran.count(3) == 0), outputs


def test_same_seed_same_loss_curve_with_a_cold_or_warm_estimator_cache(tmp_path, cli, monkeypatch):
    """The prediction made before training traces the model on a cache miss; it must not move the seeded
    generators the run then draws from (the classifier head's init, LoRA's init, dropout)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PEFTBENCH_CACHE", str(cache))  # empty: the first run's prediction is a cache miss
    curves = []
    for name in ("cold", "warm"):
        assert cli(*tiny("lora", tmp_path / name))[0] == 0
        (record,) = read_records(tmp_path / name / "smoke" / "runs.jsonl")
        assert record["status"] == "ok" and "error" not in (record["prediction"] or {"error": "none"})
        curves.append(record["train_loss_curve"])
        if name == "cold":
            assert any(cache.rglob("*")), "the cold run cached nothing: it was not a cache miss"
    assert curves[0] == curves[1]


def _kill_workers_as_they_start(signals: list[int]) -> threading.Thread:
    """Send each signal in turn to the next worker process this test process starts."""

    def kill() -> None:
        seen: set[int] = set()
        deadline = time.monotonic() + 300
        while signals and time.monotonic() < deadline:
            fresh = [pid for pid in worker_pids(parent=os.getpid()) if pid not in seen]
            if fresh:
                seen.add(fresh[0])
                time.sleep(1.0)
                os.kill(fresh[0], signals.pop(0))
            time.sleep(0.1)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_by_a_signal_is_failed_not_oom(tmp_path, cli):
    killer = _kill_workers_as_they_start([signal.SIGTERM, signal.SIGKILL])
    code, out, err = cli(*tiny("bitfit,ia3", tmp_path, "jobs=1"))
    killer.join(timeout=5)
    assert code == 0, out + err
    by_method = {r["method"]: r for r in read_records(tmp_path / "smoke" / "runs.jsonl")}
    assert by_method["bitfit"]["status"] == "failed" and "killed by signal 15 (SIGTERM)" in by_method["bitfit"]["error"]
    # SIGKILL without the kernel's OOM evidence (no cgroup/vmstat oom_kill increase) is a kill, not an OOM.
    assert by_method["ia3"]["status"] == "failed" and "killed by signal 9" in by_method["ia3"]["error"]


def _wait_for(predicate, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_an_interrupted_driver_stops_its_worker_removes_its_folders_and_records_nothing(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    argv = [sys.executable, "-m", "peftbench", *tiny("bitfit", tmp_path / "results")]
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(scratch.glob("peftbench-run-*/spec.json")) and worker_pids(parent=driver.pid))
    workers = worker_pids(parent=driver.pid)
    # The driver alone, as `kill` or a service manager would. Ctrl-C (SIGINT) takes the same path: both
    # raise KeyboardInterrupt in the driver.
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130 and "interrupted" in err, err
    assert list(scratch.iterdir()) == []
    assert not set(workers) & set(worker_pids())
    assert not (tmp_path / "results" / "smoke" / "runs.jsonl").exists()


def test_the_suite_bar_moves_with_the_steps_of_runs_in_flight(capsys):
    """A long run no longer freezes the suite bar until it ends: two runs in flight at 10/40 and 30/40 steps
    count as one run done of four, and the postfix names each with its steps and own ETA."""
    from types import SimpleNamespace

    from peftbench.runs.runner import _Progress

    progress = _Progress(4, enabled=True, step_bar=False)
    a, b = (SimpleNamespace(run_id=i, label=lambda i=i: f"lora s{i}") for i in ("a", "b"))
    for spec in (a, b):
        progress.event(spec, {"event": "phase", "name": "train", "total": 40})
    for step in range(1, 11):
        progress.event(a, {"event": "step", "step": step, "total": 40, "loss": 1.0})
    for step in range(1, 31):
        progress.event(b, {"event": "step", "step": step, "total": 40, "loss": 1.0})
    assert progress.suite_bar.n == pytest.approx(1.0)
    assert "lora sa 10/40 steps" in progress.suite_bar.postfix and "left" in progress.suite_bar.postfix
    progress.finished(b, SimpleNamespace(status="ok"))
    assert progress.suite_bar.n == pytest.approx(1.25)
    progress.close()
