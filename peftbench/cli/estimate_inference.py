"""`peftbench estimate … --inference [--context L --batch B]`: predicted serving cost per hardware profile.

Kept apart from `cli/estimate.py` (training estimates): that module only adds these flags and dispatches here.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

GiB = 2**30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference (with --inference)")
    group.add_argument("--inference", action="store_true",
                       help="predict serving cost instead: weights merged/unmerged, KV cache, decode and prefill")
    group.add_argument("--context", type=int, default=2048, help="tokens of context per sequence (default 2048)")
    group.add_argument("--batch", type=int, default=1, help="sequences decoded together (default 1)")


def run(args: argparse.Namespace) -> int:
    from peftbench.errors import MethodNotApplicable, UserError
    from peftbench.estimate.inference import estimate_inference
    from peftbench.validation import hardware_names, parse_method_overrides

    overrides = parse_method_overrides(args.overrides)
    methods = _all_methods() if args.method == "all" else [args.method]
    dtype = args.mixed_precision or args.dtype
    hardware = hardware_names(args.gpu, args.hardware)
    results = []
    for method in methods:
        try:
            results.append(estimate_inference(args.model, method, overrides=overrides.get(method), context=args.context,
                                              batch=args.batch, dtype=dtype, hardware=hardware).to_dict())
        except MethodNotApplicable as exc:
            if args.method != "all":
                raise UserError(f"{method} cannot be applied: {exc}") from None
            results.append({"model": args.model, "method": method, "skipped": str(exc)})
    if args.json:
        print(json.dumps(results[0] if args.method != "all" else results, indent=1))
    else:
        _print(results)
    return 0


def _all_methods() -> list[str]:
    from peftbench.method_declarations import METHOD_NAMES

    return [name for name in METHOD_NAMES if name != "qlora"]  # QLoRA serves as a 4-bit base: not modelled


def _print(results: list[dict[str, Any]]) -> None:
    import pandas as pd

    rows = []
    for r in results:
        if "skipped" in r:
            rows.append({"method": r["method"], "serving": "not applicable: " + r["skipped"]})
            continue
        row = {"method": r["method"], "serving": "merged" if r["mergeable"] else "unmerged",
               "weights GiB": (r["weights_bytes"]["merged"] or r["weights_bytes"]["unmerged"]) / GiB,
               "adapter MiB": r["adapter_bytes"] / 2**20,
               "KV GiB": r["kv_cache_bytes"] / GiB}
        for name, p in r["profiles"].items():
            served = p["merged" if r["mergeable"] else "unmerged"]
            row[name] = (f"{'ok' if p['fits'] else 'OOM'} {served['decode_ms_per_token']:.3g}ms/tok "
                         f"x{p['decode_overhead_served']:.3g} prefill {served['prefill_seconds']:.3g}s")
        rows.append(row)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print(pd.DataFrame(rows).fillna("").to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    first = next((r for r in results if "skipped" not in r), None)
    if first:
        print(f"\n{first['model']}: batch {first['batch']} x {first['context']} tokens of context, {first['dtype']}. "
              "Cell = weights + KV cache fit, decode time per token of the served variant (merged where the "
              "method merges), its ratio to the base model, prefill time of the whole context. A roofline "
              "(see peftbench/estimate/inference.py), not a serving-engine simulation.")
        for note in dict.fromkeys(n for r in results for n in r.get("notes", [])):
            print("note:", note)
