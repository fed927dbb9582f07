"""Build the shape fits shipped in `data/shape_fits.json.gz`, so that `estimate` answers the presets at any
batch size and sequence length without importing torch (see `shape_fit` and `front_cache`).

    python -m peftbench.estimate.ship_fits [--models a,b] [--methods x,y] [--jobs N] [--rebuild]
    python -m peftbench.estimate.ship_fits --structures   # the presets' served structures (`recommend --deploy`)

Each setting traces 7 shapes (4 anchors, 3 checks) at two depths, ~4-8 s per setting on this CPU. The
file is rewritten after every setting, so an interrupted build resumes where it stopped (run it in the
background: `nohup python -m peftbench.estimate.ship_fits --jobs 2 &`).
The settings are those `peftbench recommend` asks about (`SETTINGS`): each method at its defaults, the
LoRA family also at the ranks the recommender suggests on all linear layers, with and without gradient
checkpointing, for generation (and multiple choice, the same trace) and classification.
Only what a version bump invalidates is rebuilt: every fit after an ESTIMATOR_VERSION bump, one method's
fits after its `Method.version` or defaults change. A library release changes no key: `--rebuild`
re-traces everything, for when `peftbench doctor` reports that one drifted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from peftbench.estimate.front_cache import SHIPPED_FITS, fit_key, fit_settings
from peftbench.method_declarations import RANKED
from peftbench.versions import ESTIMATOR_VERSION

# The decoder LLMs people ask "will it fit?" about, largest first. Encoder-decoders and small models are
# traced whole (more ops, ~3x the build time per setting) and are cheap to trace when asked.
DEFAULT_MODELS = ("llama-3.1-8b", "mistral-7b", "qwen2.5-7b", "phi-3-mini", "llama-3.2-3b", "gemma-2-2b",
                  "qwen2.5-1.5b", "llama-3.2-1b", "qwen2.5-0.5b")
SETTING = {"overrides": None, "task_kind": "generation", "dtype": "bf16", "mixed_precision": None,
           "optimizer": "adamw", "num_labels": 2, "gradient_checkpointing": False}
# The LoRA family's settings as `peftbench recommend` suggests them (rank by data size, all linear layers;
# alpha is memory-neutral); tests/test_shape_fit.py checks the recommender's suggestions hit these fits.
SUGGESTED_RANKS = (8, 16, 32, 64)


def settings_for(method: str) -> list[dict[str, Any]]:
    """Every setting shipped for one method (see the module doc)."""
    variants: list[dict[str, Any] | None] = [None]
    if method in RANKED:
        variants += [{"r": r, "target_modules": "all-linear"} for r in SUGGESTED_RANKS]
    return [{**SETTING, "overrides": overrides, "task_kind": kind, "gradient_checkpointing": ckpt}
            for overrides in variants for kind in ("generation", "classification") for ckpt in (False, True)]


def _entry(model: str, method: str, setting: dict[str, Any]) -> dict[str, Any]:
    import warnings

    import torch

    torch.set_num_threads(1)
    from peftbench.cache import computed_with
    from peftbench.errors import MethodNotApplicable
    from peftbench.estimate import shape_fit
    from peftbench.estimate.api import QLORA_NOTE
    from peftbench.estimate.trace import Shape
    from peftbench.methods import get_method
    from peftbench.models.configs import load_any_config

    m = get_method(method)
    hp = m.hyperparameters(setting["overrides"])
    shape = Shape(1, 1, setting["dtype"], setting["mixed_precision"], setting["optimizer"],
                  setting["gradient_checkpointing"], device="cuda", num_labels=setting["num_labels"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = shape_fit.build(load_any_config(model), m, hp, setting["task_kind"], shape)
    except MethodNotApplicable as exc:
        return {"not_applicable": str(exc)}
    except Exception as exc:  # noqa: BLE001  one setting's failure must not stop the build; the tracing
        # path reports the same error to whoever asks for that setting
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    return {**built, "hyperparameters": hp, "extra_notes": [QLORA_NOTE] if m.quantize_4bit else [],
            "computed_with": computed_with()}


def method_metadata() -> dict[str, dict[str, Any]]:
    """What a method's fits depend on besides the estimator: its version and default hyper-parameters."""
    from peftbench.methods import registry

    return {name: {"version": m.version, "hyperparameters": m.hyperparameters(None)}
            for name, m in sorted(registry().items())}


def current_fits(store: dict[str, Any], methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The store's fits still valid for this estimator version and these method declarations."""
    if store.get("estimator_version") != ESTIMATOR_VERSION:
        return {}
    shipped = store.get("methods", {})
    return {key: fit for key, fit in store.get("fits", {}).items()
            if fit["method"] in methods and shipped.get(fit["method"]) == methods[fit["method"]]}


def _write(store: dict[str, Any]) -> None:
    SHIPPED_FITS.parent.mkdir(parents=True, exist_ok=True)
    tmp = SHIPPED_FITS.with_suffix(".tmp")
    # mtime=0: the same fits give the same bytes, so an unchanged rebuild leaves git clean
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(json.dumps(store, sort_keys=True, separators=(",", ":")).encode())
    tmp.replace(SHIPPED_FITS)


def _structure(model: str, method: str) -> tuple[str, dict[str, Any] | None]:
    """One preset's served structure (`estimate.inference.served_structure`) for a method at its defaults."""
    from dataclasses import asdict

    from peftbench.estimate.inference import compute_structure, structure_key

    key = structure_key(model, method, None, "bf16")
    try:
        shape, counts = compute_structure(model, method, None, "bf16")
    except Exception:  # noqa: BLE001  not a decoder, or a method that does not apply: asked, it says why
        return key, None
    return key, {"model": model, "method": method, "shape": asdict(shape), "counts": counts}


def ship_structures(models: list[str], methods: list[str], jobs: int) -> None:
    """The presets' served structures, which `recommend --deploy` reads for every candidate (each ~1 s to build
    on the meta device): shipped beside the fits, rebuilt whole (a few minutes)."""
    from tqdm import tqdm

    from peftbench.estimate.inference import SHIPPED_STRUCTURES

    store: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_structure, model, method) for model in models for method in methods]
        for future in tqdm(as_completed(futures), total=len(futures), desc="served structures", unit="method"):
            key, entry = future.result()
            if entry is not None:
                store[key] = entry
    SHIPPED_STRUCTURES.write_text(json.dumps(store, sort_keys=True, indent=0) + "\n")


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from peftbench.methods import registry

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--methods", default=",".join(sorted(registry())))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rebuild", action="store_true", help="re-trace every fit (after a library drifted)")
    parser.add_argument("--structures", action="store_true",
                        help="only rebuild the presets' served structures (what `recommend --deploy` reads)")
    args = parser.parse_args(argv)
    if args.structures:
        ship_structures(args.models.split(","), args.methods.split(","), args.jobs)
        return 0
    methods = method_metadata()
    with gzip.open(SHIPPED_FITS, "rt") if SHIPPED_FITS.is_file() else open(os.devnull) as f:
        previous = json.loads(f.read() or "{}")
    kept = {} if args.rebuild else current_fits(previous, methods)
    store: dict[str, Any] = {"estimator_version": ESTIMATOR_VERSION, "methods": methods, "fits": kept}
    todo = []
    for model in args.models.split(","):
        for method in args.methods.split(","):
            for setting in settings_for(method):
                key = fit_key(model, method, setting, "cuda", methods[method]["hyperparameters"])
                if key not in store["fits"]:
                    todo.append((key, model, method, setting))
                else:  # the setting as it affects memory, recorded for whoever reads the file
                    store["fits"][key]["setting"] = fit_settings(method, setting, methods[method]["hyperparameters"])
    # Generation first (most questions are about it), so that a build stopped early has shipped what is
    # asked most; within a task kind, the models' order.
    todo.sort(key=lambda item: item[3]["task_kind"] != "generation")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(_entry, model, method, setting): (key, model, method, setting)
                   for key, model, method, setting in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="shape fits", unit="setting"):
            key, model, method, setting = futures[future]
            entry = future.result()
            if "error" in entry:
                tqdm.write(f"{model} {method}: not shipped, the estimator failed ({entry['error']})")
                continue
            if entry.get("seq_range", True) is None:
                tqdm.write(f"{model} {method}: not shipped, the fit missed a check {entry['checked']}")
                continue
            store["fits"][key] = {"model": model, "method": method,
                                  "setting": fit_settings(method, setting, methods[method]["hyperparameters"]), **entry}
            _write(store)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
