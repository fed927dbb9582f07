"""The evidence set (reference results, or the one the user names) and the method metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftbench.recommend.evidence import Evidence, load_evidence
from peftbench.recommend.store import meaning_key, read_json, write_json


def method_catalogue() -> dict[str, dict[str, Any]]:
    """name -> family, architectures, defaults. Cached because the registry imports torch (~5 s)."""
    key = meaning_key("methods")
    cached = read_json("methods.json").get(key)
    if cached:
        return cached
    from peftbench.methods import registry

    catalogue = {m.name: {"family": m.family, "architectures": list(m.architectures), "defaults": dict(m.defaults),
                          "description": m.description} for m in registry().values()}
    write_json("methods.json", {key: catalogue})
    return catalogue


def default_evidence(results: Path | None = None) -> Evidence:
    """The reference results shipped with peftbench, or the evidence set the user names (`results`, a results
    root): a user's ad-hoc runs in ./results (a 2-step check, a random-init model) are never evidence unasked."""
    from peftbench.errors import UserError
    from peftbench.results import reference_results_dir, suite_result_files

    if results is None:
        return load_evidence(suite_result_files(reference_results_dir()))
    files = suite_result_files(Path(results))
    if not files:
        raise UserError(f"--results {results}: no runs files there (expected {results}/<suite>/runs.jsonl)")
    return load_evidence(files)
