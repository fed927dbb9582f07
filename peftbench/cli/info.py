"""`peftbench suites [NAME]`, `peftbench methods`, `peftbench models`: what peftbench knows."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    suites = subparsers.add_parser("suites", help="list suites, or one suite's tasks and task descriptors")
    suites.add_argument("name", nargs="?")
    suites.set_defaults(func=show_suites)
    subparsers.add_parser("methods", help="list fine-tuning methods").set_defaults(func=show_methods)
    subparsers.add_parser("models", help="list packaged models").set_defaults(func=show_models)


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
    import pandas as pd

    from peftbench.models import CATALOGUE

    rows = [{"model": s.name, "architecture": s.family, "parameters": f"{s.parameters / 1e6:.1f}M",
             "loads from": s.source, "install": s.install} for s in CATALOGUE.values()]
    print(pd.DataFrame(rows).to_string(index=False))
    print("\nAlso accepted: model=PATH (a local transformers directory) or model=ORG/NAME (a Hugging Face hub id).")
    return 0


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
