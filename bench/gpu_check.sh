#!/usr/bin/env bash
# The GPU path in minutes, on the first CUDA machine available (no hub access needed: the embedded
# models of each suite only). For each precision (fp32, bf16) it runs LoRA and full fine-tuning for a
# few steps on every suite's embedded cpu-preset model, then prints step time and accelerator memory
# (the records' memory.cuda_train_steps: average / p99 / max over the training steps, evaluation
# excluded) of LoRA against full fine-tuning, and bench/bench_loop.py's harness/bare ratio on CUDA.
#
#   bash bench/gpu_check.sh                       # all suites with local data, 20 steps
#   GPU_CHECK_SUITES="glue" GPU_CHECK_STEPS=10 bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c 'import torch' 2>/dev/null; then
    echo "bench/gpu_check.sh: python cannot import torch; activate the harness's environment first" >&2
    exit 2
fi
if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "bench/gpu_check.sh needs a CUDA device: torch.cuda.is_available() is False on $(hostname)." >&2
    echo "Run it on a machine with a GPU (CPU figures come from bench/bench_loop.py and bench/profile_run.py)." >&2
    exit 2
fi

export HF_HUB_OFFLINE=1
DATA="${HARNESS_DATA_DIR:-../shared/data}"
STEPS="${GPU_CHECK_STEPS:-20}"
SUITES="${GPU_CHECK_SUITES:-glue coco-retrieval instructeval mt-bench}"
OUT="$(mktemp -d -t gpu-check-XXXXXX)"
echo "gpu_check: $(python -c 'import torch; print(torch.cuda.get_device_name(0))'), results in $OUT"

for precision in fp32 bf16; do
    for suite in $SUITES; do
        # --limit applies to the instruction suites only; the others cap their evaluation with --max-eval-samples
        case "$suite" in
            instructeval|mt-bench) cap=(--limit 1) ;;
            *) cap=(--max-eval-samples 64) ;;
        esac
        python -m harness run --suite "$suite" --adapters lora,full --preset cpu --device cuda \
            --precision "$precision" --max-steps "$STEPS" "${cap[@]}" --data-dir "$DATA" \
            --results-dir "$OUT" --no-progress || echo "gpu_check: $suite $precision failed (see above)" >&2
    done
done

python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

rows = {}
for path in sorted(Path(sys.argv[1]).rglob("*.json")):
    r = json.loads(path.read_text())
    if r.get("status") != "success":
        print(f"{r['run_id']}: {r['status']}: {(r.get('error') or {}).get('message', '')[:200]}")
        continue
    steps = r["memory"].get("cuda_train_steps", {})
    key = (r["key"]["suite"], r["key"]["task"], r["precision"]["used"])
    rows.setdefault(key, {})[r["key"]["adapter"]] = (r["timing"]["mean_step_seconds"], steps)
print(f"{'suite/task':<24} {'prec':<5} {'adapter':<6} {'ms/step':>8} {'alloc avg':>10} {'alloc p99':>10} "
      f"{'alloc max':>10} {'reserved max':>12}  (MiB, over training steps, relative to the pre-load baseline)")
mib = lambda b: f"{(b or 0) / 2**20:.0f}"
for (suite, task, prec), by in sorted(rows.items()):
    for adapter in ("lora", "full"):
        if adapter in by:
            step, m = by[adapter]
            print(f"{suite + '/' + task:<24} {prec:<5} {adapter:<6} {step * 1000:8.1f} {mib(m.get('allocated_avg_bytes')):>10} "
                  f"{mib(m.get('allocated_p99_bytes')):>10} {mib(m.get('allocated_max_bytes')):>10} "
                  f"{mib(m.get('reserved_max_bytes')):>12}")
    if "lora" in by and "full" in by:
        (sl, ml), (sf, mf) = by["lora"], by["full"]
        print(f"{'':<24} {prec:<5} lora/full: step time {sl / sf:.2f}, max allocated "
              f"{(ml.get('allocated_max_bytes') or 0) / max(1, mf.get('allocated_max_bytes') or 1):.2f}")
PY

echo "harness loop vs bare loop on CUDA (glue/sst2, MiniLM-L6 + LoRA):"
python bench/bench_loop.py --device cuda --steps "$STEPS" --repeats 3 --data-dir "$DATA"

# Packed GPUs (--runs-per-gpu K, issue 37): runs/hour of the same small LoRA grid on GPU 0 with K runs
# sharing it (K local workers on one GPU), for K = 1, 2, 4, 8; the memory check refuses a K that does
# not fit. GPU_CHECK_PACK_RUNS runs per K (default 16), GPU_CHECK_PACK="1 2 4 8" to choose the Ks.
PACK_RUNS="${GPU_CHECK_PACK_RUNS:-16}"
SEEDS="$(python -c "print(','.join(str(s) for s in range(1, ${PACK_RUNS} + 1)))")"
echo "packed GPUs: glue/sst2 LoRA, ${PACK_RUNS} runs of ${STEPS} steps per K, CUDA_VISIBLE_DEVICES=0"
for k in ${GPU_CHECK_PACK:-1 2 4 8}; do
    PACK_OUT="$OUT/pack-k$k"
    start=$(date +%s.%N)
    CUDA_VISIBLE_DEVICES=0 python -m harness run --suite glue --tasks sst2 --adapters lora --preset cpu \
        --device cuda --seeds "$SEEDS" --max-steps "$STEPS" --max-eval-samples 64 --data-dir "$DATA" \
        --results-dir "$PACK_OUT" --no-progress --no-checkpoints --workers "$k" --runs-per-gpu "$k" \
        > "$PACK_OUT.log" 2>&1 || echo "gpu_check: K=$k failed (see $PACK_OUT.log)" >&2
    end=$(date +%s.%N)
    python - "$PACK_OUT" "$k" "$start" "$end" <<'PY'
import json, sys
from pathlib import Path

out, k, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
records = [json.loads(p.read_text()) for p in Path(out).rglob("*.json")]
ok = [r for r in records if r.get("status") == "success"]
peak = max((r["memory"].get("cuda_max_reserved_bytes") or 0 for r in ok), default=0)
hours = (end - start) / 3600
print(f"K={k}: {len(ok)}/{len(records)} runs succeeded in {end - start:.0f} s = {len(ok) / hours:.0f} runs/hour "
      f"(wall time of the command, start-up included); max reserved per run {peak / 2**20:.0f} MiB")
PY
done
