"""State left on disk that peftbench reads but did not just write: a cache it cannot use (a file, a read-only
folder, a machine-id that is a folder or binary) and runs files holding records with fields of the wrong type.
A cache can only make answers slower, so an unusable one is said in at most one line and the answer is the
same; a damaged record is skipped and said once per file by every reader, never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

ESTIMATE = ["estimate", "--model", "minilm", "--method", "lora", "--task-kind", "classification", "--hardware", "t4",
            "--json"]  # traced (seconds), and the trace is cached
TINY_RUN = ["run", "suite=smoke", "tasks=[rt_sentiment]", "sizes.train=16", "sizes.eval=8", "train.max_steps=2",
            "methods=[bitfit]"]


@pytest.fixture
def fresh_cache_env(monkeypatch):
    """Point $PEFTBENCH_CACHE somewhere (restored afterwards) with no machine id or cache warning carried in from
    an earlier test in this process."""
    from peftbench.telemetry import MACHINE_ID_ENV

    monkeypatch.delenv(MACHINE_ID_ENV, raising=False)
    monkeypatch.delenv("PEFTBENCH_CACHE_WARNED", raising=False)  # said once per process tree

    def point(path: Path) -> Path:
        monkeypatch.setenv("PEFTBENCH_CACHE", str(path))
        return path

    return point


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only_folder(folder: Path, files: dict[str, str]):
    """`folder` holding `files`, in which nothing can be created: mode 555 for a user, a read-only tmpfs for
    root (who writes through modes); the test is skipped where neither can be made."""
    folder.mkdir()
    if os.geteuid() != 0:
        for name, text in files.items():
            (folder / name).write_text(text)
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if not _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)):
        pytest.skip("root without the right to mount: no folder is read-only to it")
    try:
        for name, text in files.items():
            (folder / name).write_text(text)
        assert _mount("-o", "remount,ro", str(folder))
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def _one_warning(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("peftbench: warning: "), err
    assert "Traceback" not in err
    return lines[0]


def _answer(out: str) -> dict:
    answer = json.loads(out)
    return answer if isinstance(answer, dict) else {"answers": answer}


# ---- unusable caches --------------------------------------------------------------------------------------------
def test_cache_that_is_a_file_is_said_once_and_answers_are_the_same(cli, tmp_path, fresh_cache_env):
    fresh_cache_env(tmp_path / "good")
    code, expected, err = cli(*ESTIMATE)
    assert code == 0 and err == ""
    (tmp_path / "a-file").write_text("not a folder")
    fresh_cache_env(tmp_path / "a-file")
    code, out, err = cli(*ESTIMATE)
    assert code == 0 and _answer(out) == _answer(expected)
    assert "is not a folder" in _one_warning(err)
    assert (tmp_path / "a-file").read_text() == "not a folder"


@pytest.mark.parametrize("populated", [False, True], ids=["empty", "with-entries"])
def test_read_only_cache_is_said_once_and_answers_are_the_same(cli, tmp_path, fresh_cache_env, populated):
    fresh_cache_env(tmp_path / "good")
    code, expected, _ = cli(*ESTIMATE)
    files = {"machine-id": "0123456789abcdef", "stray.json": "{}"} if populated else {}
    with read_only_folder(tmp_path / "ro", files) as folder:
        fresh_cache_env(folder)
        code, out, err = cli(*ESTIMATE)
        assert code == 0 and _answer(out) == _answer(expected)
        assert "is not writable" in _one_warning(err)
        assert sorted(p.name for p in folder.iterdir()) == sorted(files)


def test_write_into_an_unusable_cache_neither_raises_nor_leaves_a_temp_file(tmp_path, fresh_cache_env, capsys):
    """The write helper's own clean-up once raised under a file (ENOTDIR) and on a read-only mount (EROFS)."""
    from peftbench.cache import read_json, write_json_atomic

    (tmp_path / "a-file").write_text("x")
    fresh_cache_env(tmp_path / "a-file")
    write_json_atomic(tmp_path / "a-file" / "estimates" / "k.json", {"a": 1})
    write_json_atomic(tmp_path / "a-file" / "k.json", {"a": 1})
    assert read_json(tmp_path / "a-file" / "k.json") is None
    assert capsys.readouterr().err.count("\n") == 1
    from peftbench.cache import cache_folder

    scratch = cache_folder("models", "m")  # what needs a disk gets a temporary folder instead
    assert not scratch.is_relative_to(tmp_path) and scratch.parent.parent.is_dir()


def test_write_outside_the_cache_still_raises(tmp_path, fresh_cache_env):
    """Only cache entries are best-effort: a report's or a shipped file that cannot be written is an error."""
    from peftbench.cache import write_json_atomic

    fresh_cache_env(tmp_path / "cache")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "a-file" / "out.json", {"a": 1})


@pytest.mark.parametrize("stored", ["folder", "binary", "malformed"])
def test_machine_id_that_is_not_one_gives_a_fresh_id_for_the_whole_command(tmp_path, fresh_cache_env, capsys,
                                                                           stored):
    from peftbench.telemetry import MACHINE_ID_ENV, machine_id

    cache = fresh_cache_env(tmp_path / "cache")
    cache.mkdir()
    path = cache / "machine-id"
    if stored == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe\x00\x9c" * 10 if stored == "binary" else b"not an id!\n")
    first = machine_id()
    assert first == machine_id() and len(first) == 16  # one id for the command...
    assert os.environ[MACHINE_ID_ENV] == first  # ...and for the workers it starts
    assert "machine-id" in _one_warning(capsys.readouterr().err)
    assert path.is_dir() if stored == "folder" else path.read_bytes()  # left as found: the user's to look at


def test_machine_id_in_a_cache_that_is_a_file(tmp_path, fresh_cache_env, capsys):
    from peftbench.telemetry import machine_id

    (tmp_path / "a-file").write_text("x")
    fresh_cache_env(tmp_path / "a-file")
    assert len(machine_id()) == 16
    assert "is not a folder" in _one_warning(capsys.readouterr().err)


def test_run_with_a_cache_that_is_a_file_runs_and_says_it_once(tmp_path):
    """End to end in a fresh process: the driver and its worker share one fresh machine id, and the worker's
    cache writes (the CPU profile) say nothing more."""
    (tmp_path / "a-file").write_text("x")
    env = {**os.environ, "PEFTBENCH_CACHE": str(tmp_path / "a-file")}
    env.pop("PEFTBENCH_MACHINE_ID", None)
    proc = subprocess.run([sys.executable, "-m", "peftbench", *TINY_RUN, "--no-progress", "--results",
                           str(tmp_path / "res")], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "is not a folder" in _one_warning(proc.stderr)
    (record,) = [json.loads(line) for line in (tmp_path / "res" / "smoke" / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and len(record["machine_id"]) == 16


# ---- damaged run records ------------------------------------------------------------------------------------------
DAMAGE = {
    "accuracy-text": ("metrics.accuracy is 'high', not a number", lambda r: r["metrics"].update(accuracy="high")),
    "seconds-text": ("train_seconds is 'fast', not a number", lambda r: r.update(train_seconds="fast")),
    "memory-text": ("memory.peak_rss_bytes is 'lots', not a number",
                    lambda r: r["memory"].update(peak_rss_bytes="lots")),
    "role-list": ("role is a JSON list, not text", lambda r: r.update(role=["selected"])),
    "adapter-1e40": ("adapter_bytes is 1e+40, not a count or size", lambda r: r.update(adapter_bytes=1e40)),
}


def reference_records(count: int) -> list[dict]:
    from peftbench.results import ResultStore

    records = ResultStore(REPO / "results" / "reference" / "classification" / "runs.jsonl").records()
    return [r.to_dict() for r in records if r.ok and not r.is_sweep][:count]


def damaged_root(root: Path, damage: str, every: int = 7) -> tuple[Path, int]:
    """A results root whose classification runs file holds real records, every `every`-th one damaged."""
    records = reference_records(30)
    damaged = 0
    for i, record in enumerate(records):
        if i % every == 3:
            DAMAGE[damage][1](record)
            damaged += 1
    path = root / "classification" / "runs.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, damaged


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_reader_skips_records_with_wrong_field_types_in_one_line_per_file(tmp_path, capsys, damage):
    from peftbench.results import latest_records, load_table

    path, damaged = damaged_root(tmp_path, damage)
    records = latest_records([path])
    assert len(records) == 30 - damaged
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err
    assert f"{damaged} records skipped: wrong field types" in err and DAMAGE[damage][0] in err
    assert len(load_table([path])) == 30 - damaged and capsys.readouterr().err == ""  # said once per process


def test_shipped_and_published_records_all_pass_the_type_check():
    from peftbench.record import not_a_record, wrong_field_types
    from peftbench.results import ResultStore, suite_result_files

    for path in suite_result_files(REPO / "results" / "reference"):
        for _, raw, _ in ResultStore(path)._lines():
            value = json.loads(raw)
            assert not_a_record(value) or wrong_field_types(value) is None, (path, wrong_field_types(value))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_results_and_report_read_past_damaged_records(cli, tmp_path, damage):
    path, damaged = damaged_root(tmp_path / "res", damage)
    code, out, err = cli("results", "suite=classification", "--results", str(tmp_path / "res"))
    assert code == 0 and "rt_sentiment" in out, err[-2000:]
    assert f"{damaged} records skipped: wrong field types" in _one_warning(err)
    code, _, err = cli("report", "suite=classification", f"results={tmp_path / 'res'}", "--no-estimates",
                       "--no-progress", "-o", str(tmp_path / "page.html"))
    assert code == 0 and (tmp_path / "page.html").is_file(), err[-2000:]


@pytest.mark.parametrize("text, skipped", [("", None), ("xyz\n[]\n{}\nnull\n", "skipped 4 line(s)")],
                         ids=["empty", "garbage-only"])
def test_results_of_a_runs_file_without_runs_say_no_runs_yet(cli, tmp_path, text, skipped):
    path = tmp_path / "smoke" / "runs.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    code, _, err = cli("results", "suite=smoke", "--results", str(tmp_path))
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1] == f"peftbench: error: no runs yet in {path}" and "Traceback" not in err
    assert len(lines) == (2 if skipped else 1) and (skipped is None or skipped in lines[0])


def test_recommend_learns_past_damaged_records(tmp_path, capsys):
    from peftbench.recommend.evidence import load_evidence

    records = reference_records(30)
    for record in records[::3]:
        record["metrics"] = {name: "high" for name in record["metrics"]}
    path = tmp_path / "classification" / "runs.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert len(load_evidence([path]).runs) == 20
    assert "10 records skipped: wrong field types" in _one_warning(capsys.readouterr().err)


class _RecordsAtOnce:
    """An executor that records every run it is given as done, without training: what resume does with the
    records is the subject here."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def execute(self, specs, artifacts_dir, on_record, on_event=None):
        from peftbench.runs.spec import base_record

        for spec in specs:
            self.ran.append(spec.run_id)
            on_record(spec, {**base_record(spec), "status": "ok", "metrics": {"accuracy": 50.0}})


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_reruns_a_run_whose_record_is_damaged_and_keeps_the_line(tmp_path, capsys, damage):
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan
    from peftbench.runs.runner import run_plan
    from peftbench.runs.spec import base_record

    plan = build_plan(parse_overrides(TINY_RUN[1:]))
    (spec,) = plan.specs
    record = {**base_record(spec), "status": "ok", "metrics": {"accuracy": 1.0}, "memory": {}, "role": None}
    DAMAGE[damage][1](record)
    path = tmp_path / "smoke" / "runs.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record) + "\n")
    executor = _RecordsAtOnce()
    summary = run_plan(plan, tmp_path, executor=executor, show_progress=False)
    assert executor.ran == [spec.run_id] and summary.skipped_existing == 0
    assert "1 records skipped: wrong field types" in _one_warning(capsys.readouterr().err)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == record  # the damaged line is the user's to inspect
    assert not list((tmp_path / "smoke" / ".claims").glob("*.lock"))


def test_a_disk_that_fills_while_a_record_is_written_leaves_no_half_line_and_stops_in_one_line(tmp_path,
                                                                                                   monkeypatch):
    """The store writes a record in one os.write: a short write (the disk filled) is cut back, so the runs file
    holds whole records only, and the driver stops with one line (exit 1) naming what to do, not a traceback."""
    import errno
    import os

    from peftbench import cli, results
    from peftbench.record import RunRecord

    store = results.ResultStore(tmp_path / "runs.jsonl")
    first = RunRecord.new({"run_id": "a", "status": "ok", "suite": "s", "task": "t", "method": "lora", "seed": 0})
    store.append(first)
    before = store.path.read_bytes()
    real_write = os.write
    monkeypatch.setattr(results.os, "write", lambda fd, data: real_write(fd, data[: len(data) // 2]))
    with pytest.raises(OSError) as raised:
        store.append(RunRecord.new({"run_id": "b", "status": "ok", "suite": "s", "task": "t", "method": "ia3",
                                    "seed": 0}))
    assert raised.value.errno == errno.ENOSPC
    assert store.path.read_bytes() == before and [r.run_id for r in store.records()] == ["a"]

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(store.path))

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_running(full_disk))
    err = _stderr_of(lambda: cli.main(["anything"]), monkeypatch)
    assert err[0] == 1 and err[1].count("\n") == 1 and "no space left" in err[1] and "rerun" in err[1]


def _parser_running(func):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.set_defaults(func=func)
    return parser


def _stderr_of(call, monkeypatch):
    import io
    import sys

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    return call(), buffer.getvalue()
