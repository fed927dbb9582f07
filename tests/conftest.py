"""Shared fixtures: real packaged models, real shipped data, results written to a temp directory."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never read or write the user's cache (~/.cache/peftbench): one fresh cache per test session, so a
# cached answer left by earlier work cannot make a test pass. Subprocesses inherit it.
os.environ["PEFTBENCH_CACHE"] = tempfile.mkdtemp(prefix="peftbench-test-cache-")
# The inference-cost and forgetting measurements after each run (4-35 s a run here) are tested in
# tests/test_inference.py, which turns them on; elsewhere a test trains only what it checks.
os.environ.setdefault("PEFTBENCH_POST_TRAINING", "0")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from peftbench.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse errors
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def worker_pids(*, parent: int | None = None, session: int | None = None) -> list[int]:
    """Live (not zombie) `peftbench.runs.worker` processes descending from `parent` and/or in `session`,
    read from /proc (Linux; psutil is not a dependency)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue  # exited meanwhile
        procs[int(entry.name)] = (fields[0], int(fields[1]), int(fields[3]), cmdline)  # state, ppid, session

    def descends(pid: int) -> bool:
        seen = set()
        while pid in procs and pid not in seen:
            seen.add(pid)
            pid = procs[pid][1]
            if pid == parent:
                return True
        return False

    return [pid for pid, (state, _, sid, cmdline) in procs.items()
            if state != "Z" and "peftbench.runs.worker" in cmdline
            and (parent is None or descends(pid)) and (session is None or sid == session)]


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from peftbench.models.catalogue import resolve_model

    return resolve_model("minilm")[0]
