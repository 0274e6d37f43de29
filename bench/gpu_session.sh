#!/usr/bin/env bash
# Every GPU measurement of the README in one prepared run (about 8 minutes on one H200):
#   1. bench/gan.py: ours against the DCGAN at 32x32 RGB, batches 64/256/1024, eager, at
#      width 64 (the default) and 32; then ours under reduce-overhead (CUDA graphs) at
#      batches 64 and 1024, at both widths, one process each (a compile takes about a minute);
#   2. bench/gpu_check.py (CUDA path: finite losses, weights_only checkpoints, resume,
#      best-checkpoint loop, sampling, then the digits demo with sampling and the gate's
#      classifiers on the GPU, synthesis.device auto); with QUALITY=1, bench/gan_quality.py meanwhile builds
#      and evaluates a Fashion-MNIST K=100 version with the GAN on the GPU (not timed against
#      anything; it adds about 4 minutes, so it is left out of a short device lease).
# Usage, from the repository root:  OUT=somewhere [QUALITY=1] bash bench/gpu_session.sh [FASHION_TARBALL]
# Each step has its own time limit and writes its own files, so one failing step or one
# cut short leaves the others' figures in $OUT.
set -u
out=${OUT:-bench/results/gpu}
tarball=${1:-../shared/datasets/fashion-mnist.tar.gz}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
fast=${FAST:-0}  # FAST=1: a few small steps of everything, to check the script itself on a CPU

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cpus', __import__('os').cpu_count())"
} > "$out/card.txt" 2>&1
cat "$out/card.txt"

if [ "$fast" = 1 ]; then
    devices=cpu; steps=(--steps 2); gan_steps=20; limit=300; batches=(8 16 32)
else
    devices=cuda; steps=(); gan_steps=1500; limit=90; batches=(64 256 1024)
fi

for width in 64 32; do
    echo "== gan.py eager, width $width $(date +%T)"
    timeout 75 "$py" bench/gan.py --devices $devices --resolution 32 --channels 3 \
        --batches "${batches[@]}" --width $width "${steps[@]}" >> "$out/gan.jsonl" 2>> "$out/gan.err"
    echo "rc=$?"
done
cat "$out/gan.jsonl"

small=${batches[0]} big=${batches[2]}
for run in "$small 64" "$big 64" "$small 32" "$big 32"; do
    set -- $run
    echo "== gan.py reduce-overhead, batch $1, width $2 $(date +%T)"
    timeout $limit "$py" bench/gan.py --devices $devices --resolution 32 --channels 3 \
        --batches "$1" --width "$2" --compile reduce-overhead "${steps[@]}" \
        >> "$out/gan_compiled.jsonl" 2>> "$out/gan_compiled.err"
    echo "rc=$?"
done
cat "$out/gan_compiled.jsonl"

echo "== gpu_check$([ "${QUALITY:-0}" = 1 ] && echo " and quality") $(date +%T)"
if [ "${QUALITY:-0}" = 1 ] && [ -f "$tarball" ]; then
    timeout 230 "$py" bench/gan_quality.py --tarball "$tarball" --per-class 100 --steps $gan_steps \
        --width 64 --batch 256 --copies 4 --seeds 2 --epochs 15 --json "$out/quality.json" \
        > "$out/quality.log" 2>&1 &
    quality=$!
fi
if [ "$fast" = 1 ]; then
    echo "gpu_check needs CUDA: skipped with FAST=1"
else
    timeout 200 "$py" bench/gpu_check.py > "$out/gpu_check.jsonl" 2> "$out/gpu_check.err"
    echo "rc=$?"; cat "$out/gpu_check.jsonl"
fi
if [ -n "${quality:-}" ]; then
    wait "$quality"
    echo "quality rc=$?"; tail -5 "$out/quality.log"
fi
echo "== done $(date +%T)"
