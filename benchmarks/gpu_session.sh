#!/usr/bin/env bash
# What only a GPU can show, in under 10 minutes, for a session lent one (the device tool runs this in the
# repository root; nothing outside the machine can be reached there):
#   1. `peftbench run` on CUDA end to end: LoRA, QLoRA (bitsandbytes) and full fine-tuning on the packaged MiniLM
#      and SmolLM2 models, with the pynvml fields and predicted-vs-measured peaks of each record;
#   2. the estimator against measured peaks on random-init presets (benchmarks/gpu_validation.py measure);
#   3. the one-GPU path of multi-process runs (gpus_per_run=1, FSDP) where that override exists.
# Prepare here, then carry the venv and the bitsandbytes wheel:
#   python -m pip download --no-deps -d .whl bitsandbytes   # /.whl/ is git-ignored
#   run(command="bash benchmarks/gpu_session.sh", carry=[".venv", ".whl"], timeout_s=590)
# Figures land in $OUT (the device tool brings them back): copy them into benchmarks/ and commit.
set -u
OUT="${OUT:-/tmp/gpu-session}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PEFTBENCH_CACHE="$OUT/cache"
. .venv/bin/activate 2>/dev/null || true
log() { echo "=== $(date -u +%T) $*" | tee -a "$OUT/session.log"; }

log "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  | tee -a "$OUT/session.log"
if ls .whl/bitsandbytes-*.whl >/dev/null 2>&1; then
  python -m pip install --no-deps -q .whl/bitsandbytes-*.whl && log "bitsandbytes installed from the carried wheel"
else
  log "no bitsandbytes wheel carried: QLoRA will be recorded skipped"
fi

log "1. peftbench run on CUDA (MiniLM classification, SmolLM2 generation)"
timeout 300 peftbench run suite=smoke device=cuda "tasks=[rt_sentiment,constitution_title]" \
  "methods=[lora,qlora,full]" sizes.train=64 sizes.eval=32 train.max_steps=20 --no-progress \
  --results "$OUT/results" 2>&1 | tail -15 | tee -a "$OUT/session.log"
python - "$OUT" <<'EOF' | tee "$OUT/run_records.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| task | method | status | measured peak (MiB) | predicted (MiB) | error | GPU (pynvml) | error / reason |")
print("|---|---|---|---|---|---|---|---|")
for line in (out / "results" / "smoke" / "runs.jsonl").read_text().splitlines():
    r = json.loads(line)
    mem, pred = r.get("memory") or {}, r.get("prediction") or {}
    measured, predicted = mem.get("cuda_max_reserved_bytes"), pred.get("peak_bytes")
    err = f"{(predicted - measured) / measured:+.1%}" if measured and predicted else "-"
    gpu = (r.get("device") or {}).get("name", "")
    mib = lambda b: f"{b / 2**20:.0f}" if b else "-"  # noqa: E731
    print(f"| {r['task']} | {r['method']} | {r['status']} | {mib(measured)} | {mib(predicted)} | {err} | {gpu} | "
          f"{(r.get('error') or '')[:80]} |")
EOF

log "2. estimator vs measured peaks on random-init presets"
timeout 180 python benchmarks/gpu_validation.py measure 2>&1 | tail -5 | tee -a "$OUT/session.log"
cp benchmarks/gpu_measurements.json "$OUT/" 2>/dev/null || true

log "3. the one-GPU path of a multi-process run"
if peftbench run --help | grep -q gpus_per_run; then
  timeout 120 peftbench run suite=smoke device=cuda "tasks=[rt_sentiment]" "methods=[lora]" gpus_per_run=1 \
    strategy=fsdp sizes.train=32 sizes.eval=16 train.max_steps=10 --no-progress --results "$OUT/results-mp" 2>&1 \
    | tail -5 | tee -a "$OUT/session.log"
else
  log "gpus_per_run is not an override in this version: skipped"
fi
log "done"
