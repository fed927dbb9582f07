"""Compute estimator and recommender answers for a report: `python -m peftbench.report.worker < JOBS.json`.

Runs as a child of `peftbench report` so that the parent can stop it when its time budget runs out.
Prints one JSON line `{"key", "answer"}` per job as soon as it is done, so a kill loses only the job
in progress. Every failure is an answer (`{"error": ...}`), shown on the page.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from peftbench.report import fmt


def estimate_answer(job: dict[str, Any]) -> dict[str, Any]:
    """The part of an estimate the hardware matrix shows."""
    from peftbench.estimate import estimate

    shape = job["shape"]
    result = estimate(shape["model"], job["method"], task_kind=shape["kind"], batch_size=shape["batch_size"],
                      seq_len=shape["seq_len"], dtype=shape["dtype"], hardware=job["profiles"]).to_dict()
    fits = {str(n): (p or {}).get("fits") for n, p in (result.get("profiles") or {}).items()}
    return {"peak_bytes": result.get("peak_bytes"), "fits": fits}


def _relative_text(quality: Any, band: Any) -> str:
    text = "—" if fmt.missing(quality) else f"{quality:.0%} of full FT"
    if band and len(band) == 2 and not any(fmt.missing(b) for b in band):
        text += f" ({band[0]:.0%}–{band[1]:.0%})"
    return text


def _option(cand: Any, epochs: float) -> dict[str, Any]:
    """One candidate as the verdict compares it: predicted quality with its interval, and its training cost."""
    from peftbench.recommend.choice import gpu_hours

    return {"method": cand.method, "predicted": cand.predicted_relative_quality, "interval": cand.quality_interval,
            "gpu_hours": gpu_hours(cand, epochs), "may_lead": cand.may_lead,
            "near_comparisons": cand.near_comparisons, "near_sources": cand.near_sources}


def _higher_without_evidence(top: Any, ranked: list[Any]) -> list[str]:
    """Methods predicted above the pick that the lead rule kept out (too few comparisons near the query); the
    rule is outright where the pick leads outright, else provisional, as in `decision.options_for`."""
    def eligible(c: Any) -> bool:
        return c.may_lead if top.may_lead else c.may_lead_provisionally

    pick = top.predicted_relative_quality or 0.0
    return [c.method for c in ranked if not eligible(c) and (c.predicted_relative_quality or 0.0) > pick]


def _base_params(candidates: list[Any]) -> int:
    """The base model's size: the smallest total over the methods (each adds its own trainable weights to it)."""
    return min((c.total_params for c in candidates if c.total_params), default=0)


def recommend_answer(job: dict[str, Any]) -> dict[str, Any]:
    """The recommender's pick with its reasons, the decision behind it (`decision`: pick, best quality, best
    value, ties, summary) and the alternatives it names, as the verdict and the summary show them."""
    from peftbench.recommend import recommend

    rec = recommend(job["task"], gpu=job["gpu"], model=job["model"], results=Path(job["root"]), top=3)
    if not rec.ranking:
        # The engine says why: nothing fits, or nothing has the evidence to be first.
        return {"error": rec.no_pick_reason or "no method can be recommended"}
    top, epochs = rec.ranking[0], float(rec.task.get("epochs") or 1.0)
    text = _relative_text(top.predicted_relative_quality, top.quality_interval)
    if not top.may_lead:
        text += "; provisional: one source's evidence"
    ranked = [c for c in rec.ranking + rec.not_ranked if c.status == "ranked"]
    decision = {k: v for k, v in (rec.decision or {}).items() if k != "reasons"}
    named = {top.method, decision.get("best_quality"), decision.get("best_value"), *decision.get("ties", [])}
    return {"method": top.method, "hyperparameters": top.hyperparameters or {}, "quality": text, "gpu": rec.gpu,
            "reasons": [str(r) for r in top.reasons], "evidence": [str(e) for e in top.evidence[:3]],
            "run_line": top.override, "warnings": [str(w) for w in top.warnings],
            "separates": rec.separates, "provisional": not top.may_lead, "decision": decision,
            "pick": _option(top, epochs),
            "alternatives": {c.method: _option(c, epochs) for c in ranked if c.method in named},
            "higher_without_evidence": _higher_without_evidence(top, ranked),
            "model_params": _base_params(rec.ranking + rec.not_ranked), "train": dict(rec.task)}


def main() -> int:
    import warnings

    warnings.simplefilter("ignore")  # library deprecation chatter would only fill the parent's stderr pipe
    jobs = json.loads(sys.stdin.read())
    handlers = {"estimate": estimate_answer, "recommend": recommend_answer}
    for key, job in jobs.items():
        try:
            answer = handlers[job["kind"]](job)
        except Exception as exc:  # not applicable, unknown model, a bug elsewhere: a note on the page
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"key": key, "answer": answer}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
