#!/usr/bin/env bash
# The reference runs: every applicable method at its selected learning rate (tune=lr) on every
# reference task, written into the checkout's results/reference (--into-reference). One run at a time per
# invocation (jobs=1), adapters not kept. Every line resumes: rerunning the script skips what this machine
# has recorded, so it can be stopped and restarted at will.
#
#   nohup benchmarks/reference_runs.sh >> reference_runs.log 2>&1 &                 # every suite, one core
#   nohup benchmarks/reference_runs.sh classification finance >> a.log 2>&1 &        # two lanes, two cores:
#   nohup benchmarks/reference_runs.sh legal medical summarization translation >> b.log 2>&1 &
#   nohup benchmarks/reference_runs.sh translation/bible_en_es >> c.log 2>&1 &         # one task
#   SETS=default nohup benchmarks/reference_runs.sh legal/mmlu_law >> d.log 2>&1 &     # its default set only
#
# Lanes may share a suite (a driver waits for the sweep runs another holds before it selects a rate), but
# separate suites keep both cores busy. Order = value per
# CPU-minute: one MiniLM task per suite first (~1 CPU-minute a run), each task complete (the default set on
# three seeds, then the other methods on one), then the second MiniLM tasks, then SmolLM2 tasks.
set -u
cd "$(dirname "$0")/.."
REF="$PWD/results/reference"
# One campaign over many short-lived machines: resume skips what this id recorded, wherever it ran (a fresh
# machine's own id would re-measure every committed run). Set PEFTBENCH_MACHINE_ID to start a new campaign.
export PEFTBENCH_MACHINE_ID="${PEFTBENCH_MACHINE_ID:-787fdc36ff0e4426}"
NEW="[dora,rslora,adalora,loha,lokr,vera,oft,boft,ln_tuning,p_tuning,prefix_tuning,qlora]"
DEFAULT="[full,lora,ia3,adapter,bitfit,prompt_tuning]"
COMMON=(tune=lr jobs=1 save_adapters=false --no-progress --into-reference --results "$REF")
LANE=("$@")

in_lane() {  # suite task: a lane names whole suites ("medical") or single tasks ("medical/drug_review_sentiment")
  [ ${#LANE[@]} -eq 0 ] && return 0
  local s; for s in "${LANE[@]}"; do [ "$s" = "$1" ] || [ "$s" = "$1/$2" ] && return 0; done; return 1
}

run() {  # suite task methods seeds
  in_lane "$1" "$2" || return 0
  echo "=== $(date -u +%FT%TZ) suite=$1 task=$2 methods=$3 seeds=$4"
  PYTHONPATH="$PWD" python -m peftbench run "suite=$1" "tasks=[$2]" "methods=$3" "seeds=$4" "${COMMON[@]}"
  echo "=== $(date -u +%FT%TZ) done suite=$1 task=$2 (exit $?)"
}

task() {  # suite task: the default set at its selected rates on three seeds first, then every other method on one
  # (every suite already has >= 12 tuned methods on one task, so a task's default set is worth more per CPU-hour now)
  run "$1" "$2" "$DEFAULT" "[0]"
  run "$1" "$2" "$DEFAULT" "[0,1,2]"
  [ "${SETS:-all}" = default ] || run "$1" "$2" "$NEW" "[0]"
}

FIRST=("classification rt_sentiment" "finance reuters_acq_crude" "legal constitution_part"
       "medical drug_review_sentiment")
SECOND=("classification bbc_topic" "medical drug_review_condition")
SMOLLM=("legal mmlu_law" "legal constitution_title" "finance mmlu_economics" "finance bbc_business_headline"
        "medical mmlu_medicine" "classification bbc_topic_lm" "summarization bbc_headline"
        "summarization aclsum" "translation bible_en_fr" "translation bible_en_es")

for entry in "${FIRST[@]}" "${SECOND[@]}" "${SMOLLM[@]}"; do task $entry; done
echo "=== $(date -u +%FT%TZ) all reference runs in this lane finished"
