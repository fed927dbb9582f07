"""What the first screen says per task: one verdict a team lead can act on, and the measured summary beneath it.

The verdict is the recommender's pick (what to use, on which GPU class, how sure, what a full training run
costs), read beside this suite's own measurement: where the two differ, it says why in one sentence; where the
measurement cannot separate methods, its numbers are marked as noise rather than shown as a winner. Without a
recommendation (no estimator, a time budget, no method with the evidence to lead) the verdict is the measured
one, with the reason the recommendation is missing.
"""

from __future__ import annotations

from typing import Any

from peftbench.report import fmt, tables

DISPLAY_NAMES = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA", "rslora": "rsLoRA",
                 "adalora": "AdaLoRA", "ia3": "(IA)³", "loha": "LoHa", "lokr": "LoKr", "vera": "VeRA", "oft": "OFT",
                 "boft": "BOFT", "bitfit": "BitFit", "ln_tuning": "LayerNorm tuning", "adapter": "bottleneck adapters",
                 "prompt_tuning": "prompt tuning", "prefix_tuning": "prefix tuning", "p_tuning": "P-tuning",
                 "pissa": "PiSSA", "milora": "MiLoRA", "fourierft": "FourierFT", "mora": "MoRA"}
SETTING_NAMES = {"learning_rate": "lr", "r": "r", "lora_alpha": "alpha", "target_r": "r",
                 "num_virtual_tokens": "tokens"}


NOISY = ("tied", "none")  # measured states whose numbers the page shows as noise, never as a winner


def display(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def settings_text(hyperparameters: dict[str, Any]) -> str:
    """The settings a reader would type, in short: learning rate and size; defaults (None) left out."""
    parts: list[str] = []
    for key, short in SETTING_NAMES.items():
        value = hyperparameters.get(key)
        if value is not None and short not in (p.split(" ")[0] for p in parts):
            parts.append(f"{short} {value:g}" if isinstance(value, (int, float)) else f"{short} {value}")
    return ", ".join(parts)


def gpu_cost_text(hours: float | None, unit: str = "GPU-h") -> str:
    """GPU-hours in the words a budget is made of; tiny runs in minutes, so '0.000' never reads as free."""
    if hours is None or fmt.missing(hours):
        return "cost not estimated"
    if unit != "GPU-h":
        return f"{hours:.3g} {unit}"
    if hours >= 1:
        return f"{hours:,.3g} GPU-hours"
    if hours >= 1 / 60:
        return f"{hours * 60:.0f} GPU-minutes ({hours:.2g} GPU-h)"
    return f"under one GPU-minute ({hours:.1g} GPU-h)"


def model_size(params: float | None) -> str:
    if not params:
        return "this"
    return f"{params / 1e9:.1f}B-parameter" if params >= 1e9 else f"{params / 1e6:.0f}M-parameter"


def measured_summary(entry: dict[str, Any], info: Any | None) -> dict[str, Any]:
    """The task's measured verdict: its best configuration and the others its lead is within the noise of. A
    task that cannot separate methods names none ("no method separates"); a best method whose lead is inside
    the smallest detectable difference is marked tied, and its numbers are shown as noise. A method tuned on
    the task competes with its tuned runs only; its plain runs stay in the table, not in the summary."""
    table: tables.TaskTable = entry["table"]
    compared = table.compared()
    ranked = sorted(compared.items(), key=lambda kv: -kv[1]["quality"])
    best, values = ranked[0]
    near = [(m, v) for m, v in ranked if v["quality"] >= values["quality"] - 1.0]
    lean = min(near, key=lambda kv: (fmt.missing(kv[1]["peak_memory_bytes"]), kv[1]["peak_memory_bytes"]))
    full = table.full_summary()
    relative = 100.0 * values["quality"] / full["quality"] if full and full["quality"] else None
    state, tied, note, sdd = "separates", [], "", None
    if info is not None and info.detectable_difference is None:
        state, note = "unjudged", info.reason
    elif info is not None:
        sdd = info.detectable_difference
        if not info.informative:
            state, note = "none", info.reason
        else:
            tied = [m for m in info.tied_with_best({m: v["quality"] for m, v in compared.items()}) if m != best]
            if tied:
                state = "tied"
                note = f"within the smallest detectable difference ({sdd:.1f} points) of {', '.join(tied)}"
    return {"task": table.task, "anchor": entry["anchor"], "kind": table.kind, "primary": table.primary,
            "model": table.model, "best_config": best, "best_method": table.methods.get(best, best),
            "best": best if state != "none" else "no method separates", "state": state,
            "separates": state == "separates", "tied": tied, "sdd": sdd, "note": note,
            "quality": f"{values['quality']:.1f}", "relative": fmt.percent(relative) if state != "none" else "—",
            "lean": lean[0], "lean_quality": f"{lean[1]['quality']:.1f}",
            "lean_memory": fmt.human_bytes(lean[1]["peak_memory_bytes"]), "methods": len(ranked)}


def pick_configuration(table: tables.TaskTable, method: str | None) -> str | None:
    """The compared configuration a pick stands for on the plots: the method's best-scoring one."""
    configs = [(v["quality"], c) for c, v in table.compared().items() if table.methods.get(c, c) == method]
    return max(configs)[1] if configs else None


def task_verdict(measured: dict[str, Any], pick: dict[str, Any] | None, problem: str, where: str,
                 on_cpu: bool) -> dict[str, Any]:
    """One task's verdict (module doc). `where` says on which GPU classes the pick fits (`gpu_classes`);
    `problem` why there is no pick, when there is none."""
    head = {"task": measured["task"], "anchor": measured["anchor"], "kind": measured["kind"],
            "primary": measured["primary"], "model": measured["model"]}
    if not pick or "pick" not in pick:
        return {**head, **_measured_only(measured, problem or "the recommender was not asked")}
    chosen = pick["pick"]
    sure_label, sure_text = _sureness(pick)
    train = pick.get("train") or {}
    size = (f"{train['epochs']:g} epochs of {train['train_examples']:,} examples at {train['seq_len']} tokens"
            if train.get("train_examples") and train.get("epochs") else "1,000 optimizer steps")
    cost = (f"{gpu_cost_text(chosen.get('gpu_hours'), (pick.get('decision') or {}).get('cost_unit', 'GPU-h'))} "
            f"for {size}, on one {_gpu_short(pick.get('gpu', ''))}")
    return {**head, "action": "use", "method": display(pick["method"]),
            "settings": settings_text(pick.get("hyperparameters") or {}),
            "where": where, "sure_label": sure_label, "sure_class": "noise" if sure_label != "separates" else "sure",
            "sure_text": sure_text, "cost_text": cost + _best_value(pick), "provisional": bool(pick.get("provisional")),
            "measured_text": _measured_sentence(measured, pick, on_cpu),
            "measured_noise": measured["state"] in NOISY}


def _sureness(pick: dict[str, Any]) -> tuple[str, str]:
    """How sure the pick is, with its predicted quality and interval, and who it cannot be told from."""
    chosen, decision = pick["pick"], pick.get("decision") or {}
    interval = chosen.get("interval") or []
    predicted = "" if fmt.missing(chosen.get("predicted")) else f"predicted {chosen['predicted']:.0%} of full FT"
    if len(interval) == 2:
        predicted += f" ({interval[0]:.0%}–{interval[1]:.0%}, 80% interval)"
    evidence = (f"from {chosen.get('near_comparisons', 0)} comparisons near this task "
                f"({chosen.get('near_sources', 0)} sources)")
    rivals = [m for m in decision.get("ties", []) if m != pick["method"]]
    thin = pick.get("higher_without_evidence") or []
    thin_text = (f"; {len(thin)} method{'s' if len(thin) > 1 else ''} predicted higher "
                 f"({', '.join(display(m) for m in thin[:3])}{', …' if len(thin) > 3 else ''}) "
                 "lack the comparisons to lead" if thin else "")
    if pick.get("separates", True) and not rivals:
        return "separates", f"{predicted} {evidence}{thin_text}."
    names = ", ".join(display(m) for m in rivals) or "the runner-up"
    return "within noise", f"of {names}; picked as the cheaper, more robust: {predicted} {evidence}{thin_text}."


def _best_value(pick: dict[str, Any]) -> str:
    decision = pick.get("decision") or {}
    value = decision.get("best_value")
    option = (pick.get("alternatives") or {}).get(value) if value else None
    if not value or not option:
        return "."
    cost = gpu_cost_text(option.get("gpu_hours"), decision.get("cost_unit", "GPU-h"))
    return (f". Best value: {display(value)}, {cost}, within {decision.get('value_margin_points', 2):g} points of "
            "the best predicted quality.")


def _measured_sentence(measured: dict[str, Any], pick: dict[str, Any], on_cpu: bool) -> str:
    """This suite's own measurement beside the pick, and, where they differ, why the page follows the pick."""
    chosen = pick["pick"]
    run = f"this {model_size(pick.get('model_params'))} {'CPU ' if on_cpu else ''}run"
    weighs = (f"the pick weighs {chosen.get('near_comparisons', 0)} comparisons from {chosen.get('near_sources', 0)} "
              "sources near this task's scale, these runs among them")
    if measured["state"] == "none":
        return f"Methods do not separate on {run} ({measured['note'].removeprefix('no method separates: ')}); {weighs}."
    best, score = display(measured["best_method"]), measured["quality"]
    unjudged = "; one seed, so its noise is not judged" if measured["state"] == "unjudged" else ""
    if measured["best_method"] == pick["method"]:
        tie = f", ≈ within noise of {_others(measured['tied'])}" if measured["state"] == "tied" else ""
        return f"Also the best measured on {run} ({score}{tie}{unjudged})."
    if measured["state"] == "tied":
        return _capital(f"{best} measured best on {run} ({score} ≈, within the {measured['sdd']:.1f}-point noise of "
                        f"{_others(measured['tied'])}); {weighs}.")
    return _capital(f"{best} measured best on {run} ({score}, {measured['relative']} of full FT{unjudged}); "
                    f"{weighs}.")


def _others(names: list[str]) -> str:
    return f"{len(names)} other{'s' if len(names) != 1 else ''}"


def _capital(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _measured_only(measured: dict[str, Any], problem: str) -> dict[str, Any]:
    """A verdict from the suite's own runs alone, for a task the recommender gave no pick for."""
    state = measured["state"]
    if state == "none":
        sure = ("no method separates", measured["note"].removeprefix("no method separates: ") + ".")
    elif state == "tied":
        sure = ("within noise", f"{measured['quality']} ≈, within the {measured['sdd']:.1f}-point noise of "
                                f"{_others(measured['tied'])}.")
    elif state == "unjudged":
        sure = ("not judged", f"{measured['quality']} ({measured['relative']} of full FT); {measured['note']}.")
    else:
        sure = ("separates", f"{measured['quality']} ({measured['relative']} of full FT), beyond the task's noise.")
    return {"action": "measured", "method": display(measured["best_method"]) if state != "none" else "",
            "settings": "", "where": "", "sure_label": sure[0],
            "sure_class": "sure" if state == "separates" else "noise", "sure_text": sure[1],
            "cost_text": "GPU cost not estimated: no recommendation.", "provisional": False,
            "measured_text": f"No recommendation: {_reason(problem)}.", "measured_noise": False}


def _reason(problem: str) -> str:
    """The recommender's reason without the words the sentence around it already says."""
    return problem.removeprefix("no method can be recommended: ").rstrip(".")


def _gpu_short(label: str) -> str:
    """'16GB (NVIDIA T4 16GB, the most conservative card)' -> 'NVIDIA T4 16GB'."""
    inside = label.partition("(")[2].partition(",")[0].rstrip(")")
    return inside or label or "GPU"


def gpu_classes(task: str, method: str | None, pick_gpu: str, matrix: Any) -> str:
    """On which GPU classes the pick fits at the suite's shapes (the estimator's matrix), in one phrase. The
    recommender costs on its most conservative card; every listed class from there up fits unless the matrix
    says otherwise."""
    rows = [r for r in getattr(matrix, "rows", []) if (r["task"], r["method"]) == (task, method) and not r.get("error")]
    profiles = list(getattr(matrix, "profiles", []))
    too_big = sorted({p for r in rows for p, cell in r["cells"].items() if cell.get("fits") is False})
    smallest = pick_gpu.partition(" ")[0] or "the smallest listed card"
    if not too_big:
        span = f" ({profiles[0].upper()} to {profiles[-1].upper()})" if len(profiles) > 1 else ""
        return f"on any GPU class from {smallest} up{span}"
    fits = [p for p in profiles if p not in too_big]
    return (f"on {', '.join(p.upper() for p in fits) or 'none of the listed GPUs'}; too big at these shapes on "
            f"{', '.join(p.upper() for p in too_big)}")
