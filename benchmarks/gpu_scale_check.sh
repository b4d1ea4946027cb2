#!/usr/bin/env bash
# The prepared GPU check of uldviz.scale (docs/scale.md): a hub-like teacher/student pair saved locally
# (GPT-2-small-shaped teacher, 6-layer student, the kit's two tokenizers), ULD distillation in bf16, one process and,
# when the machine has two GPUs or more, two processes (DDP). Prints student tokens per second and peak GPU memory
# per process count; writes them to $OUT/gpu_scale_check.json. Offline: nothing is downloaded.
#   bash benchmarks/gpu_scale_check.sh            (about 2-4 minutes on one recent GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-/tmp/uldviz_gpu_scale_check}
STEPS=${STEPS:-60}
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
"$PY" -c "import torch, accelerate; assert torch.cuda.is_available(), 'no CUDA GPU here'; \
print('torch', torch.__version__, '| accelerate', accelerate.__version__, '|', torch.cuda.get_device_name(0))"
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")

"$PY" -m uldviz.scale.toy "$OUT/pair" --size hub-like
ARGS=(--teacher "$OUT/pair/teacher" --student "$OUT/pair/student" --student-init fresh --bf16
      --steps "$STEPS" --warmup-steps 5 --lr 3e-4 --max-tokens 512 --window-chars 2000 --eval-every 100000
      --eval-chars 20000 --save-every 0 --no-progress --loss uld --align offset)

# one process, global batch 16
"$PY" -m uldviz train "${ARGS[@]}" --batch-size 16 --out-dir "$OUT/one"
RUNS=("$OUT/one")
if [ "$NGPU" -ge 2 ]; then  # two processes, the same global batch
    "$PY" -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision bf16 \
        --dynamo_backend no -m uldviz train "${ARGS[@]}" --batch-size 8 --out-dir "$OUT/two"
    RUNS+=("$OUT/two")
else
    echo "one GPU: the two-process run is skipped (two NCCL processes cannot share one device)"
fi

"$PY" - "$OUT" "${RUNS[@]}" <<'PYEOF'
import json, sys
from pathlib import Path
rows = []
for run in sys.argv[2:]:
    r = json.loads((Path(run) / "result.json").read_text())
    peak = r["peak_memory_bytes"]
    rows.append({"processes": r["processes"], "global_batch": r["global_batch"], "steps": r["steps"],
                 "tokens_per_second": r["tokens_per_second"], "peak_gpu_memory_gib_per_process": peak / 2**30,
                 "final_loss": r["history"][-1]["loss"], "final_bpb": r["final_bpb"]})
    print(f"{r['processes']} process(es): {r['tokens_per_second']:,.0f} student tokens/s, "
          f"peak GPU memory {peak / 2**30:.2f} GiB per process, last loss {r['history'][-1]['loss']:.4f}")
Path(sys.argv[1], "gpu_scale_check.json").write_text(json.dumps(rows, indent=1) + "\n")
PYEOF
