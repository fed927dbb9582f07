#!/usr/bin/env bash
# The reference runs of issue 15: every applicable method at its selected learning rate (tune=lr) on every
# reference task, written into the checkout's results/reference (--into-reference). One run at a time
# (jobs=1: one core stays free for whoever shares the machine), adapters not kept. Every line resumes:
# rerunning the script skips what this machine has recorded, so it can be stopped and restarted at will.
#
#   nohup benchmarks/reference_runs.sh >> reference_runs.log 2>&1 &
#
# Order = value per CPU-minute: MiniLM classification tasks first (~1 CPU-minute a run), the methods never
# run before first (one seed), then the default method set on three seeds, then the SmolLM2 tasks likewise.
set -u
cd "$(dirname "$0")/.."
REF="$PWD/results/reference"
NEW="[dora,rslora,adalora,loha,lokr,vera,oft,boft,ln_tuning,p_tuning,prefix_tuning,qlora]"
DEFAULT="[full,lora,ia3,adapter,bitfit,prompt_tuning]"
COMMON=(tune=lr jobs=1 save_adapters=false --no-progress --into-reference --results "$REF")

run() {  # suite tasks methods seeds
  echo "=== $(date -u +%FT%TZ) suite=$1 tasks=$2 methods=$3 seeds=$4"
  PYTHONPATH="$PWD" python -m peftbench run "suite=$1" "tasks=$2" "methods=$3" "seeds=$4" "${COMMON[@]}"
  echo "=== $(date -u +%FT%TZ) done suite=$1 tasks=$2 (exit $?)"
}

MINILM=("classification [rt_sentiment,bbc_topic]" "finance [reuters_acq_crude]" "legal [constitution_part]"
        "medical [drug_review_sentiment,drug_review_condition]")
SMOLLM=("legal [mmlu_law,constitution_title]" "finance [mmlu_economics,bbc_business_headline]"
        "medical [mmlu_medicine]" "classification [bbc_topic_lm]" "summarization [bbc_headline,aclsum]"
        "translation [bible_en_fr,bible_en_es]")

for entry in "${MINILM[@]}"; do set -- $entry; run "$1" "$2" "$NEW" "[0]"; done
for entry in "${MINILM[@]}"; do set -- $entry; run "$1" "$2" "$DEFAULT" "[0,1,2]"; done
for entry in "${SMOLLM[@]}"; do set -- $entry; run "$1" "$2" "$NEW" "[0]"; done
for entry in "${SMOLLM[@]}"; do set -- $entry; run "$1" "$2" "$DEFAULT" "[0,1,2]"; done
echo "=== $(date -u +%FT%TZ) all reference runs finished"
