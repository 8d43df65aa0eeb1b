#!/usr/bin/env bash
# The tuned cpu GLUE leaderboard (issue 32, docs/tuning.md): per task, every method tuned with the same
# budget on the validation split (Optuna grid over each method's learning-rate range, Hyperband
# pruning), then seeds 42, 64 and 128 at the chosen values. Resumable: run the same command again and
# finished trials and runs are not repeated. Hours of both cores; tasks go cheapest first, so that
# whole tasks finish early.
#   RESULTS=results TASKS="sst2 mrpc" bash scripts/tuned_grid.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
RESULTS=${RESULTS:-results}
DATA=${DATA:-../shared/data}
ADAPTERS=${ADAPTERS:-lora,msplora,sera,lora2,vera,dora,pissa,full,head}
TRIALS=${TRIALS:-6}
WORKERS=${WORKERS:-2}
status=0
for task in ${TASKS:-sst2 mrpc rte stsb qnli cola}; do
  "$PY" -m harness tune --suite glue --preset cpu --tasks "$task" --adapters "$ADAPTERS" --trials "$TRIALS" \
    --sampler grid --pruner hyperband --workers "$WORKERS" --data-dir "$DATA" --results-dir "$RESULTS" \
    --no-progress || status=1
  "$PY" -m harness run --suite glue --preset cpu --tasks "$task" --adapters "$ADAPTERS" --tuned \
    --seeds 42,64,128 --workers "$WORKERS" --data-dir "$DATA" --results-dir "$RESULTS" --no-progress || status=1
done
exit $status
