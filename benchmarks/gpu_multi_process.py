"""Runs over several processes on CUDA (NCCL): the path this CPU-only development machine cannot run.

    python benchmarks/gpu_validation.py multi --out DIR     # on the GPU machine; writes DIR/multi_process.json

With 2 or more GPUs: the CPU check of `gpus_per_run` on CUDA — `peftbench run suite=smoke
tasks=[constitution_title] methods=[full,lora] device=cuda gpus_per_run=2 strategy=ddp|fsdp sizes.train=16
sizes.eval=8 train.max_steps=4` — beside the one-process run with the same effective batch (accumulation 2).
With one GPU (NCCL cannot put two ranks on one device): the same runs as one rank through the same launcher, per
strategy — NCCL's process group, DDP and FSDP2 on a CUDA device, each rank's CUDA peaks, the gathered weights'
evaluation: all but traffic between GPUs. Each run's status, world size, loss curve, per-rank peaks and
prediction go into the JSON; compare the curves (same to ~1e-4 for full fine-tuning; LoRA's dropout draws
differ per rank) and the per-rank peaks against `prediction.peak_bytes`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHECK = ["suite=smoke", "tasks=[constitution_title]", "methods=[full,lora]", "sizes.train=16", "sizes.eval=8",
         "train.max_steps=4"]
STRATEGIES = ("ddp", "fsdp")


def _summary(record: dict) -> dict:
    ranks = record.get("ranks") or [{"rank": 0, "memory": record.get("memory", {})}]
    return {"method": record["method"], "status": record["status"], "error": record.get("error"),
            "world_size": record.get("world_size"), "strategy": record.get("strategy"),
            "loss_curve": record.get("train_loss_curve"), "metrics": record.get("metrics"),
            "predicted_peak_bytes": (record.get("prediction") or {}).get("peak_bytes"),
            "rank_peaks": [{"rank": r["rank"], **{k: v for k, v in r["memory"].items() if k.startswith("cuda_")}}
                           for r in ranks]}


def _cli(results: Path, *overrides: str) -> list[dict]:
    subprocess.run([sys.executable, "-m", "peftbench", "run", *CHECK, "device=cuda", *overrides, "--no-progress",
                    "--results", str(results)], check=True)
    lines = (results / "smoke" / "runs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _one_rank(spec, strategy: str, folder: Path) -> dict:
    """`spec` run by the multi-process launcher as a single rank with `strategy` (world size 1)."""
    train = {**spec.train, "world_size": 1, "strategy": strategy, "offload": "none"}
    spec = dataclasses.replace(spec, device="cuda", train=train)
    (folder / "spec.json").write_text(spec.to_json())
    subprocess.run([sys.executable, "-m", "peftbench.runs.launch", str(folder / "spec.json"),
                    str(folder / "result.json"), str(folder / "artifacts")], check=False)
    result = folder / "result.json"
    return json.loads(result.read_text()) if result.is_file() else {"method": spec.method, "status": "failed",
                                                                     "error": "no result: see the output above"}


def check(out: Path) -> dict:
    import torch

    gpus = torch.cuda.device_count()
    report: dict = {"gpus": gpus, "torch": torch.__version__, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        if gpus >= 2:
            one = _cli(Path(tmp) / "one", "train.gradient_accumulation_steps=2")
            report["runs"] += [_summary(r) for r in one]
            for strategy in STRATEGIES:
                runs = _cli(Path(tmp) / strategy, "gpus_per_run=2", f"strategy={strategy}")
                report["runs"] += [_summary(r) for r in runs]
        else:
            from peftbench.overrides import parse_overrides
            from peftbench.runs.plan import build_plan

            for spec in build_plan(parse_overrides([*CHECK, "device=cuda"])).specs:
                for strategy in STRATEGIES:
                    folder = Path(tmp) / f"{spec.method}-{strategy}"
                    folder.mkdir()
                    report["runs"].append({**_summary(_one_rank(spec, strategy, folder)), "strategy": strategy})
    out.mkdir(parents=True, exist_ok=True)
    (out / "multi_process.json").write_text(json.dumps(report, indent=1))
    for run in report["runs"]:
        print(run["method"], run["strategy"], run["world_size"], run["status"], run["error"] or "",
              run["loss_curve"], run["rank_peaks"], run["predicted_peak_bytes"])
    return report
