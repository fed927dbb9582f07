"""peftbench as a user installs it: a wheel (not editable) in a fresh virtual environment, used from an
empty directory — suites, data, presets, fits and reference results come from the package, and a run
writes to ./results there and nowhere else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent


def test_every_source_package_is_listed_for_the_wheel():
    """pyproject lists packages explicitly (the data folders are mapped in); a new subpackage must be added."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "peftbench").rglob("*.py")
             if "__pycache__" not in p.parts}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment with the built wheel installed (dependencies from this interpreter's site)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((root / "dist").glob("peftbench-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    if sys.prefix != sys.base_prefix:
        # Run from a virtual environment, --system-site-packages reaches the base interpreter's site, not the one
        # holding the dependencies: name it (a path entry; the .pth files there, an editable install's, stay off).
        import site

        purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                  "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip()
        (Path(purelib) / "_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --ignore-installed: a peftbench already in the interpreter's site (an editable install of a checkout)
    # must not satisfy the requirement in place of the wheel under test.
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-q", "--ignore-installed",
                    "--disable-pip-version-check", str(wheel)], check=True, capture_output=True)
    return venv


def _peftbench(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PEFTBENCH_RESULTS")}
    return subprocess.run([str(venv / "bin" / "peftbench"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def _files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_carries_the_data_and_lists_every_suite(installed, tmp_path):
    site = next((installed / "lib").glob("python*/site-packages"))
    package = site / "peftbench"
    for relative in ("suite_files/legal.yaml", "suite_files/data/rt_sentiment/train.jsonl",
                     "reference_results/legal/runs.jsonl", "published_results/hu2021_lora.csv",
                     "estimate/data/shape_fits.json.gz", "estimate/data/serving_structures.json",
                     "models/presets/llama-3.1-8b/config.json",
                     "hardware/profiles.json", "models/data/smollm2-135m-tokenizer.json.gz",
                     "report/templates/suite.html.jinja"):
        assert (package / relative).is_file(), relative
    proc = _peftbench(installed, tmp_path, "suites")
    assert proc.returncode == 0, proc.stderr
    suites = {line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert suites == {"classification", "finance", "legal", "medical", "smoke", "summarization", "translation"}
    proc = _peftbench(installed, tmp_path, "results", "suite=legal")
    assert proc.returncode == 0 and "reference results shipped with peftbench" in proc.stdout, proc.stderr
    assert _peftbench(installed, tmp_path, "evidence").returncode == 0


def test_a_run_from_the_wheel_writes_only_to_the_working_directory(installed, tmp_path):
    site = next((installed / "lib").glob("python*/site-packages"))
    before_site, before_repo = _files(site / "peftbench"), _files(REPO / "results")
    proc = _peftbench(installed, tmp_path, "run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]",
                      "sizes.train=16", "sizes.eval=8", "train.max_steps=2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "results" / "smoke" / "runs.jsonl").is_file()
    assert _files(site / "peftbench") == before_site
    # The checkout's results: nothing new, nothing changed — except reference runs a maintainer may be
    # recording in the background (benchmarks/reference_runs.sh: other suites than this run's smoke).
    after_repo = _files(REPO / "results")
    changed = {p for p in set(before_repo) | set(after_repo) if before_repo.get(p) != after_repo.get(p)}
    reference = REPO / "results" / "reference"
    assert all(Path(p).is_relative_to(reference) and not Path(p).is_relative_to(reference / "smoke")
               for p in changed), changed
