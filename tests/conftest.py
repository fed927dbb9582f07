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


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from peftbench.models.catalogue import resolve_model

    return resolve_model("minilm")[0]
