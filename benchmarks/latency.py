"""Cold and cached latency of the questions users ask, each in a fresh process, written to benchmarks/latency.md.

    python benchmarks/latency.py                                 # this environment (the lock)
    python benchmarks/latency.py --python /tmp/newest/bin/python --label newest   # another venv, e.g. the
                                                                 # newest releases (.ci/canaries-newest's venv)

"Cold" is a first call with an empty peftbench cache (`PEFTBENCH_CACHE` in a fresh temporary folder): what a new
install pays, shipped fits and shipped answers included. "Cached" is the same call again. Each question runs once
cold and once cached (these are seconds-to-minutes calls on a 2-core machine; the spread between runs is in the
notes of the markdown it writes). An un-preset model is a Llama-2-7B-shaped config.json written to a temporary
folder: no preset and no shipped fit matches it, so it is traced. A local config of a preset's model is
Llama-3.1-8B-Instruct's config.json as the hub ships it: it builds the preset's model (`models.config_identity`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "latency.md"
LLAMA2_7B = {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
             "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
             "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05, "rope_scaling": None,
             "tie_word_embeddings": False, "torch_dtype": "float16", "vocab_size": 32000}
# Llama-3.1-8B-Instruct's config.json as the hub ships it (defaults spelled out, the instruct model's token ids): a
# local copy of a preset's model, which builds the preset's model and is answered from its shipped fits.
LLAMA31_8B_INSTRUCT = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256}
CSV = "text,label\n" + "".join(f"\"the filing {i} claims breach of contract and seeks damages\","
                               f"{'yes' if i % 3 else 'no'}\n" for i in range(400))


def questions(work: Path) -> list[tuple[str, list[str]]]:
    config = work / "llama2-7b" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(LLAMA2_7B))
    instruct = work / "Llama-3.1-8B-Instruct" / "config.json"
    instruct.parent.mkdir(parents=True, exist_ok=True)
    instruct.write_text(json.dumps(LLAMA31_8B_INSTRUCT))
    data = work / "claims.csv"
    data.write_text(CSV)
    return [
        ("estimate, covered 8B setting", ["estimate", "--model", "llama-3.1-8b", "--method", "lora"]),
        ("estimate, un-preset 7B config", ["estimate", "--model", str(config), "--method", "lora"]),
        ("recommend, headline", ["recommend", "--gpu", "16GB", "--task", "summarization"]),
        ("recommend, multiple choice, 200 examples", ["recommend", "--gpu", "24GB", "--task", "multiple-choice",
                                                      "--train-examples", "200"]),
        ("recommend, --data CSV", ["recommend", "--gpu", "24GB", "--task", "classification", "--data", str(data)]),
        ("recommend, a preset's hub id", ["recommend", "--gpu", "24GB", "--task", "summarization", "--model",
                                          "meta-llama/Llama-3.1-8B"]),
        ("recommend, SUITE/TASK", ["recommend", "--gpu", "24GB", "--task", "legal/constitution_part", "--model",
                                   "llama-3.1-8b"]),
        ("recommend, --deploy edge", ["recommend", "--gpu", "24GB", "--task", "summarization", "--deploy", "edge"]),
        ("recommend, un-preset 7B config", ["recommend", "--gpu", "24GB", "--task", "summarization", "--model",
                                            str(config)]),
        ("estimate, local config of a preset's model", ["estimate", "--model", str(instruct.parent), "--method",
                                                         "lora"]),
        ("recommend, local config of a preset's model", ["recommend", "--gpu", "24GB", "--task", "summarization",
                                                          "--model", str(instruct.parent)]),
        ("refusal, misspelt method", ["estimate", "--model", "llama-3.1-8b", "--method", "lorra"]),
    ]


def timed(python: str, args: list[str], cache: Path) -> tuple[float, int]:
    env = {**os.environ, "PEFTBENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([python, "-m", "peftbench", *args], env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the environment to time")
    parser.add_argument("--label", default="lock", help="the environment's name in the table")
    parser.add_argument("--only", default="", help="comma-separated substrings of the question names to run")
    args = parser.parse_args()
    versions = subprocess.run([args.python, "-c", "from peftbench.cache import computed_with; "
                               "print(', '.join(f'{k} {v}' for k, v in computed_with().items()))"],
                              capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, argv in questions(work):
            if args.only and not any(s in name for s in args.only.split(",")):
                continue
            cache = work / f"cache-{len(rows)}"
            cold, rc = timed(args.python, argv, cache)
            cached, _ = timed(args.python, argv, cache)
            rows.append((name, cold, cached, rc))
            print(f"{name}: cold {cold:.1f} s, cached {cached:.1f} s (exit {rc})", flush=True)
    lines = [f"## {args.label}: {versions}", "", f"`python benchmarks/latency.py --label {args.label}`, "
             f"{os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}.", "",
             "| question | cold (s) | cached (s) | exit |", "|---|---|---|---|"]
    lines += [f"| {name} | {cold:.1f} | {cached:.1f} | {rc} |" for name, cold, cached, rc in rows]
    section = "\n".join(lines) + "\n"
    intro = "# Latency of everyday questions\n\n" + __doc__.split("\n\n")[2] + "\n"
    previous = OUT.read_text() if OUT.is_file() else intro
    kept = [part for part in previous.split("\n## ") if not part.startswith(f"{args.label}:")]
    OUT.write_text("\n## ".join(kept).rstrip() + "\n\n" + section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
