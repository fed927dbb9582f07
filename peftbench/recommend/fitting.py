"""Fit the quality model from the results table (or reuse the cached fit), and the method metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftbench.recommend.evidence import Evidence, Run, load_evidence
from peftbench.recommend.quality import RelativeQualityModel, task_features
from peftbench.recommend.store import meaning_key, read_json, write_json

MIN_TASKS = 2  # fewer tasks than this and there is nothing to generalise from


def run_features(run: Run) -> dict[str, Any]:
    return {"method": run.method, "family": run.family,
            **task_features(run.kind, run.architecture, run.total_params, run.train_examples,
                            run.mean_input_tokens, run.mean_target_tokens, run.trainable_params)}


def training_rows(runs: list[Run]) -> tuple[list[dict[str, Any]], list[float], list[str]]:
    """Every non-full run with a full-FT reference; grouped by task name so that the same data in two
    suites (rt_sentiment in smoke and classification) counts as one task for the bootstrap."""
    rows = [r for r in runs if r.relative is not None and r.method != "full"]
    return [run_features(r) for r in rows], [float(r.relative) for r in rows], [r.task for r in rows]


def fit_quality(runs: list[Run]) -> RelativeQualityModel | None:
    X, y, groups = training_rows(runs)
    if len(set(groups)) < MIN_TASKS:
        return None
    return RelativeQualityModel().fit(X, y, groups)


def fitted_model(evidence: Evidence) -> RelativeQualityModel | None:
    """The model fitted on all evidence, from the JSON cache when the results files have not changed."""
    key = f"{meaning_key('recommender', 'methods')}:{evidence.files_hash}"
    cached = read_json("fitted.json").get(key)
    if cached is not None:
        return RelativeQualityModel.from_dict(cached) if cached else None
    model = fit_quality(evidence.runs)
    write_json("fitted.json", {key: model.to_dict() if model else {}})
    return model


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
