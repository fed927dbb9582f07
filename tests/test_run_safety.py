"""Run-safety pieces without training: the runs-file reader past lines that are not records, per-run claims,
temporary folders swept after a killed driver, and how a worker's death is classified."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GARBAGE = ["[]", "123", "null", "{}", '{"status": "ok"}', '"text"', "not json at all", '{"run_id": 5, "status": "ok"}',
           '{"run_id": "r", "status": "ok", "suite": "s", "task": "t", "method": "m", "metrics": [1]}',
           "[" * 100_000]


def reference_records() -> list[dict]:
    from peftbench.results import ResultStore

    return [r.to_dict() for r in ResultStore(REPO / "results" / "reference" / "smoke" / "runs.jsonl").records()]


@pytest.fixture
def dirty_results(tmp_path) -> tuple[Path, list[dict]]:
    """A results root whose smoke runs file mixes real records with every kind of line that is not one."""
    records = reference_records()[:4]
    lines = GARBAGE[:5] + [json.dumps(r) for r in records[:2]] + GARBAGE[5:] + [json.dumps(r) for r in records[2:]]
    path = tmp_path / "smoke" / "runs.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n" + '{"run_id": "torn", "sta')  # a torn last line
    return tmp_path, records


def test_reader_skips_non_records_and_reports_each_line_once(dirty_results, capsys):
    from peftbench.results import ResultStore, latest_records

    root, records = dirty_results
    path = root / "smoke" / "runs.jsonl"
    assert [r.to_dict() for r in ResultStore(path).records()] == records
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "skipped 10 line(s)" in err
    for number, why in [(1, "a JSON list"), (2, "a JSON int"), (3, "a JSON null"),
                        (4, "no run_id, status, suite, task, method"), (5, "no run_id, suite, task, method")]:
        assert f"line {number}: {why}" in err, (number, err)
    assert "and 5 more" in err
    assert "torn" not in err  # an append in progress is not a bad line
    assert [r.to_dict() for r in latest_records([path])] == records
    assert capsys.readouterr().err == ""  # said once per process


def test_results_and_report_read_past_bad_lines(dirty_results, cli, tmp_path):
    root, records = dirty_results
    code, out, err = cli("results", "suite=smoke", "--results", str(root))
    assert code == 0 and records[0]["method"] in out and "Traceback" not in err
    code, _, err = cli("report", "suite=smoke", f"results={root}", "--no-estimates", "-o", str(tmp_path / "r"))
    assert code == 0, err
    assert (tmp_path / "r").exists()


def test_repair_keeps_a_whole_record_missing_only_its_newline(tmp_path):
    from peftbench.results import ResultStore

    record = reference_records()[0]
    path = tmp_path / "runs.jsonl"
    path.write_text("[]\n" + json.dumps(record))
    store = ResultStore(path)
    assert [r.to_dict() for r in store.records()] == [record]
    store.repair()
    assert path.read_text() == "[]\n" + json.dumps(record) + "\n"
    path.write_text(json.dumps(record) + "\n" + json.dumps(record)[:40])
    store.repair()
    assert path.read_text() == json.dumps(record) + "\n"


def test_replace_drops_the_runs_earlier_records_and_keeps_unknown_lines(tmp_path):
    from peftbench.results import ResultStore

    first, second = reference_records()[:2]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join([json.dumps(first), "123", json.dumps(second),
                               json.dumps({**first, "machine_id": "elsewhere"})]) + "\n")
    newer = {**first, "finished_at": "2099-01-01T00:00:00Z"}
    ResultStore(path).replace(newer, machine=first["machine_id"])
    lines = path.read_text().splitlines()
    assert lines[0] == "123" and json.loads(lines[1]) == second
    # the rewritten run is a record written now: stamped with the current schema version
    assert json.loads(lines[2])["machine_id"] == "elsewhere" and json.loads(lines[3]) == {**newer, "schema_version": 2}


_HOLD_CLAIM = """
import sys, time
from peftbench.runs.claims import RunClaims
assert RunClaims(sys.argv[1]).try_claim("run-a")
print("held", flush=True)
time.sleep(60)
"""


def test_a_claim_excludes_other_processes_until_its_holder_dies(tmp_path):
    from peftbench.runs.claims import RunClaims

    holder = subprocess.Popen([sys.executable, "-c", _HOLD_CLAIM, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        claims = RunClaims(tmp_path)
        assert not claims.try_claim("run-a")
        assert claims.try_claim("run-b")
        holder.send_signal(signal.SIGKILL)  # the kernel drops a dead holder's lock: no stale claim
        holder.wait()
        assert claims.try_claim("run-a")
        claims.release("run-a", recorded=True)
        assert not (tmp_path / ".claims" / "run-a.lock").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_tuned_driver_waits_for_the_sweep_runs_another_driver_holds(tmp_path):
    """Two `peftbench run ... tune=lr` of one suite: the one that finishes its share of the sweep first must
    wait for the other's sweep runs before selecting a rate (else it would select without them)."""
    import threading

    from peftbench.runs.claims import RunClaims

    other, mine = RunClaims(tmp_path), RunClaims(tmp_path)
    assert other.try_claim("sweep-1")
    waited = threading.Event()
    waiter = threading.Thread(target=lambda: (mine.wait_for("sweep-1"), waited.set()))
    waiter.start()
    assert not waited.wait(0.5)  # still held: the waiter blocks
    other.release("sweep-1", recorded=True)
    assert waited.wait(10)
    waiter.join()
    mine.wait_for("never-claimed")  # nobody holds it: returns at once


_HOLD_FOLDER = """
import sys, time
from peftbench.runs.scratch import run_folder
with run_folder() as path:
    print(path, flush=True)
    time.sleep(60)
"""


def test_run_folders_of_killed_drivers_are_swept_and_live_ones_kept(tmp_path):
    from peftbench.runs.scratch import run_folder, sweep_stale

    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    killed = subprocess.Popen([sys.executable, "-c", _HOLD_FOLDER], stdout=subprocess.PIPE, text=True, env=env)
    stale = Path(killed.stdout.readline().strip())
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (tmp_path / "peftbench-run-older-version").mkdir()  # no owner file: not provably stale, left alone
    os.environ["TMPDIR"], previous = str(tmp_path), os.environ.get("TMPDIR")
    import tempfile

    tempfile.tempdir = None
    try:
        with run_folder() as live:
            assert stale.is_dir() and live.parent == tmp_path
            assert sweep_stale() == [stale]
            assert live.is_dir() and not stale.exists() and (tmp_path / "peftbench-run-older-version").is_dir()
        assert not live.exists()
    finally:
        os.environ.pop("TMPDIR") if previous is None else os.environ.update(TMPDIR=previous)
        tempfile.tempdir = None


def test_oom_is_claimed_only_on_the_kernels_evidence(tmp_path):
    from peftbench.runs.executor import _exit_cause
    from peftbench.runs.scratch import oom_kills

    assert _exit_cause(-9, {"cg": 3}, {"cg": 4})[0] == "oom"
    status, how = _exit_cause(-9, {"cg": 3}, {"cg": 3})
    assert status == "failed" and "signal 9" in how and "not by the OOM killer" in how
    assert _exit_cause(-9, {}, {}) == ("failed", "killed by signal 9 (SIGKILL), not by the OOM killer; "
                                                  "no OOM-kill counter readable here")
    assert _exit_cause(-15, {"cg": 3}, {"cg": 4}) == ("failed", "killed by signal 15 (SIGTERM)")
    assert _exit_cause(1, {}, {}) == ("failed", "exited with code 1")
    # The counters: cgroup v2 memory.events, v1 memory.oom_control (also in a cgroup namespace), else vmstat.
    fs = tmp_path / "cgroup"
    (fs / "a" / "b").mkdir(parents=True)
    (fs / "a" / "b" / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 7\n")
    cgroup = tmp_path / "self-cgroup"
    cgroup.write_text("0::/a/b\n")
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("nr_free_pages 1\noom_kill 42\n")
    assert oom_kills(vmstat, cgroup_file=cgroup, fs=fs) == {str(fs / "a" / "b" / "memory.events"): 7}
    (fs / "memory").mkdir()
    (fs / "memory" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    cgroup.write_text("4:memory:/not/visible/here\n")
    assert oom_kills(vmstat, cgroup_file=cgroup, fs=fs) == {str(fs / "memory" / "memory.oom_control"): 2}
    cgroup.write_text("1:cpu:/\n")
    assert oom_kills(vmstat, cgroup_file=cgroup, fs=fs) == {str(vmstat): 42}


def test_tests_and_their_subprocesses_use_the_sessions_own_cache():
    """conftest points PEFTBENCH_CACHE at a fresh folder; workers and CLI subprocesses inherit it, so no test
    reads or writes the user's ~/.cache/peftbench."""
    from peftbench.cache import cache_root
    from peftbench.runs.executor import _worker_env

    assert os.path.basename(cache_root()).startswith("peftbench-test-cache-")
    assert cache_root() != Path.home() / ".cache" / "peftbench"
    child = subprocess.run([sys.executable, "-c", "from peftbench.cache import cache_root; print(cache_root())"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(cache_root())
    from peftbench.runs.spec import RunSpec
    from peftbench.suites import TaskSpec, TrainConfig

    task = TaskSpec("t", "classification", {}, {}, "m", {})
    spec = RunSpec("s", task, "m", "lora", {}, TrainConfig(threads=1), 0, "default", "f")
    assert _worker_env(spec)["PEFTBENCH_CACHE"] == str(cache_root())
