"""`peftbench evidence [--source ID] [--json]`: the published-evidence corpus, source by source, with totals."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evidence", help="list the cited published-evidence corpus (papers, repositories)")
    parser.add_argument("--source", metavar="ID", help="print one source's rows")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=show_evidence)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def _sources(rows) -> list[dict]:
    by_source: dict[str, list] = {}
    for row in rows:
        by_source.setdefault(row.source_id, []).append(row)
    out = []
    for source_id, group in by_source.items():
        sizes = [r.total_params for r in group if r.total_params is not None]
        out.append({"source": source_id, "citation": group[0].citation, "rows": len(group),
                    "methods": sorted({r.method for r in group if r.method}),
                    "min_total_params": min(sizes, default=None), "max_total_params": max(sizes, default=None),
                    "task_kinds": sorted({r.task_kind for r in group})})
    return out


def show_evidence(args: argparse.Namespace) -> int:
    import json

    from peftbench.errors import UserError
    from peftbench.recommend.corpus import CorpusError, load_corpus, summary

    try:
        rows = load_corpus()
    except CorpusError as exc:
        raise UserError(f"published-evidence corpus is invalid: {exc}") from None
    if args.source:
        chosen = [r for r in rows if r.source_id == args.source]
        if not chosen:
            known = ", ".join(sorted({r.source_id for r in rows}))
            raise UserError(f"unknown source '{args.source}' (known: {known})")
        return _show_source(chosen, as_json=args.json)

    sources, totals = _sources(rows), summary(rows)
    if args.json:
        print(json.dumps({"sources": sources, "totals": totals}, indent=2))
        return 0

    import pandas as pd

    table = pd.DataFrame([{"source": s["source"], "rows": s["rows"], "methods": ",".join(s["methods"]),
                           "model sizes": f"{_size(s['min_total_params'])}-{_size(s['max_total_params'])}",
                           "task kinds": ",".join(s["task_kinds"]), "citation": s["citation"]} for s in sources])
    with pd.option_context("display.max_colwidth", 90, "display.width", 250):
        print(table.to_string(index=False))
    print(f"\nTotals: {totals['rows']} rows from {totals['sources']} sources; "
          f"{len(totals['methods'])} peftbench methods covered ({', '.join(totals['methods'])}), "
          f"plus {totals['rows_without_method']} rows of methods peftbench lacks")
    print(f"Model sizes: {_size(totals['min_total_params'])} to {_size(totals['max_total_params'])}; "
          f"task kinds: {', '.join(totals['task_kinds'])}")
    print(f"Training data: {totals['rows_small_data']} rows with <=1000 examples, {totals['rows_large_data']} with "
          f"more, {totals['rows_unknown_data']} not stated")
    return 0


def _show_source(rows, *, as_json: bool) -> int:
    import dataclasses
    import json

    from peftbench.recommend.corpus import relative_quality

    if as_json:
        print(json.dumps([dataclasses.asdict(r) | {"relative_quality": relative_quality(r)} for r in rows], indent=2))
        return 0

    import pandas as pd

    print(f"{rows[0].source_id}: {rows[0].citation}\n")
    table = pd.DataFrame([{"line": r.line, "model": r.model, "task": r.task, "metric": r.metric,
                           "published": r.method_published, "method": r.method or "-", "score": r.score,
                           "reference": "-" if r.full_ft_score is None else f"{r.full_ft_score} ({r.reference_method})",
                           "relative": "-" if relative_quality(r) is None else f"{relative_quality(r):.3f}",
                           "train_examples": "-" if r.train_examples is None else r.train_examples,
                           "locator": r.locator} for r in rows])
    with pd.option_context("display.max_colwidth", 70, "display.width", 250):
        print(table.to_string(index=False))
    return 0
