#!/usr/bin/env bash
# Every benchmark on one GPU with the sizes of issues #10 and #6; the tables go to one folder.
# NOT part of CI: it needs a CUDA GPU. ONLY="step_cnn e2e_r3d" runs the named benchmarks only
# (for machines with a per-command time limit, run them a few at a time); each one is stopped
# after BENCH_TIMEOUT seconds (default 900). DATA=DIR reuses a synthetic dataset (DIR/videos, DIR/annotations)
# made elsewhere (`ssvrl data synth`) instead of making them here; PY=python3 picks another
# interpreter.
#
#   bash benchmarks/gpu_all.sh [OUT_DIR]        (default: benchmarks/gpu_results/<date>)
#
# Sizes: R3D-18 and R(2+1)D-18 at 16x112x112 and ViT-B at 8x224x224, fp32 / bf16, with and
# without torch.compile and channels-last-3d (step_bench); SVT with ViT-S and ViT-B at the
# paper's views, 2 x 8x224x224 global + 8 local 96 px views (svt_bench); CVRL with R3D-18 16x112x112 bf16
# end to end on synthetic videos with 16 loader workers (e2e_bench) and against a minimal
# loop (overhead_bench, with a host-sync report); the loader with 16 workers on prepared
# files (loader_bench); the augmentation on the GPU (augment_bench).
# Each benchmark writes <name>.md (the table) and <name>.log (everything); one failing
# benchmark does not stop the others; the exit status counts the failures.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$REPO/benchmarks/gpu_results/$(date +%Y-%m-%d)}")  # before the cd
cd "$REPO"
PY=${PY:-.venv/bin/python}  # PY=python for another environment
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU visible to $PY (torch.cuda.is_available() is False): nothing run" >&2
  exit 2
fi
mkdir -p "$OUT"
"$PY" -c "import torch; print(torch.cuda.get_device_name(), torch.__version__)" > "$OUT/device.txt"
nvidia-smi >> "$OUT/device.txt" 2>&1 || true
failures=0

wanted() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

run() {  # run NAME ARGS...: the command's stdout table lines -> NAME.md, all output -> NAME.log
  local name=$1; shift
  wanted "$name" || return 0
  echo "== $name: $*" | tee -a "$OUT/commands.txt"
  local start=$SECONDS
  if timeout -k 20 "${BENCH_TIMEOUT:-900}" "$@" > "$OUT/$name.log" 2>&1; then
    echo "   done in $((SECONDS - start)) s"
  else
    echo "   FAILED after $((SECONDS - start)) s (see $OUT/$name.log)"
    failures=$((failures + 1))
  fi
  grep -E '^(\||[A-Za-z].*(torch|ratio|ssvrl /|host syncs|wall time|batch|CVRL|videos))' \
    "$OUT/$name.log" > "$OUT/$name.md" || true
}

# Training step: clips/s, MFU (H200 peak from benchmarks/flops.py), peak memory, compile time.
STEP=("$PY" benchmarks/step_bench.py --batch 32 --warmup 5 --steps 20)
run step_cnn "${STEP[@]}" --models r3d_18 r2plus1d_18 --compile off
run step_cnn_compile "${STEP[@]}" --models r3d_18 --dtypes bf16 --compile on
run step_vit "${STEP[@]}" --models vit_base --batch 8 --memory-format contiguous --compile off
run step_vit_compile "${STEP[@]}" --models vit_base --batch 8 --memory-format contiguous \
  --dtypes bf16 --compile on
# SVT (issue #6): throughput and memory of ViT-S and ViT-B at the paper's view recipe.
run svt "$PY" benchmarks/svt_bench.py --models vit_small vit_base --batch 8 32 --warmup 3 \
  --steps 10

# Synthetic videos at 128 px, 96 frames (two 16-frame stride-2 clips fit at different times).
DATA=${DATA:-$OUT/synthetic_128}
if { wanted e2e_r3d || wanted loader_16w; } && [ ! -f "$DATA/annotations/classInd.txt" ]; then
  "$PY" -m ssvrl data synth "$DATA" --classes 12 --groups 25 --clips-per-group 7 --frames 96 \
    --size 128 --workers 16 > "$OUT/synth.log" 2>&1 || failures=$((failures + 1))
fi
CVRL_R3D=(--config experiments/cvrl/ucf101_r3d18.yaml --set data.batch_size=64
  data.short_side=128 trainer.precision=bf16-mixed)

# End to end: the real loader (16 workers) vs the same batches in memory.
run e2e_r3d "$PY" benchmarks/e2e_bench.py --data "$DATA" --workers 16 --warmup 5 --steps 30 \
  --rounds 2 "${CVRL_R3D[@]}"

# Framework overhead vs a minimal loop, with the host-sync report.
run overhead_r3d "$PY" benchmarks/overhead_bench.py --rounds 3 --warmup 5 --steps 30 \
  --input-size 128 --sync-report "${CVRL_R3D[@]}"
run overhead_vit "$PY" benchmarks/overhead_bench.py --rounds 2 --warmup 3 --steps 15 \
  --input-size 256 --sync-report --config experiments/svt/k400_vit_b.yaml \
  --set data.batch_size=16 trainer.precision=bf16-mixed

# Loader: 16 workers, original vs prepared files, decode-once vs per-view; the real
# Kinetics-style clips of ../shared/data when this checkout has them, else the synthetic set.
LOADER_SRC=(--copies 32)
[ -d ../shared/data/mmaction2 ] || LOADER_SRC=(--videos "$DATA/videos" --copies 1)
run loader_16w "$PY" benchmarks/loader_bench.py "${LOADER_SRC[@]}" --workers 16 --samples 1024

# Augmentation on the GPU (target > 10,000 clips/s at 16x112x112).
run augment "$PY" benchmarks/augment_bench.py --device cuda --batch 256 --workers 16 \
  --ref-clips 256

echo "tables in $OUT ($failures failed)"
exit "$failures"
