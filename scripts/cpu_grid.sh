#!/usr/bin/env bash
# Regenerates the cpu-preset records shipped in results/ (one seed, offline, CPU). Each command resumes:
# runs whose record exists are skipped, so the script can be stopped and started again. The commands
# are ordered so that a partial run is still useful (the foundation rows first, then every adapter on
# one task, then the vision suite, then the rest of the grid). Run it from a clean checkout: records
# written from a tree with uncommitted changes are marked dirty.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${HARNESS_DATA_DIR:-../shared/data}
run() { HF_HUB_OFFLINE=1 python -m harness run "$@" --preset cpu --data-dir "$DATA" --results-dir results; }

run --suite glue --adapters lora,full,head                       # LoRA, full fine-tuning, head only: all six tasks
run --suite glue --tasks sst2 --adapters all                     # every adapter on SST-2
run --suite glue --tasks stsb --adapters msplora,sera,lora2
run --suite coco-retrieval --adapters zero-shot,lora,msplora,sera,vera
run --suite glue --tasks stsb,rte --adapters all
run --suite glue --adapters msplora,sera,lora2
run --suite glue --adapters lora,msplora,sera,lora2,vera,head --seeds 42,64,128 --workers auto   # 3 seeds: the CIs
run --suite glue --adapters full --seeds 42,64,128 --workers auto
reproduce() { HF_HUB_OFFLINE=1 python -m harness reproduce "$@" --preset cpu --data-dir "$DATA" --results-dir results --workers auto; }
reproduce msplora-t1                                             # MSPLoRA Table 1's rows on the cpu preset
reproduce sera-t3                                                # SeRA Table 3's rows on the cpu preset
run --suite glue --adapters all                                  # the rest of the GLUE grid
run --suite coco-retrieval --adapters all
run --suite instructeval --adapters zero-shot,lora,msplora,sera
run --suite mt-bench --adapters zero-shot,lora,msplora,sera
run --suite instructeval --adapters all                          # every adapter that applies to a causal LM
run --suite mt-bench --adapters all
