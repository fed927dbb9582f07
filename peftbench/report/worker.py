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


def recommend_answer(job: dict[str, Any]) -> dict[str, Any]:
    """The recommender's top pick with its reasons, as the summary shows it."""
    from peftbench.recommend import recommend

    answer = recommend(job["task"], gpu=job["gpu"], model=job["model"], results=Path(job["root"]), top=3).to_dict()
    if not answer.get("ranking"):
        # The engine says why: nothing fits, or nothing has the evidence to be first.
        return {"error": answer.get("no_pick_reason") or "no method can be recommended"}
    top = answer["ranking"][0]
    quality, band = top.get("predicted_relative_quality"), top.get("quality_interval")
    text = "—" if fmt.missing(quality) else f"{quality:.0%} of full FT"
    if band and len(band) == 2 and not any(fmt.missing(b) for b in band):
        text += f" ({band[0]:.0%}–{band[1]:.0%})"
    if not top.get("may_lead", True):
        text += "; provisional: one source's evidence"
    return {"method": top.get("method", "—"), "hyperparameters": top.get("hyperparameters") or {},
            "quality": text, "gpu": str(answer.get("gpu", job["gpu"])),
            "reasons": [str(r) for r in top.get("reasons") or []],
            "evidence": [str(e) for e in (top.get("evidence") or [])[:3]]}


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
