#!/usr/bin/env bash
# Every GPU measurement of issue 35 in one prepared run (at most 9 minutes on one GPU, each step
# under its own time limit; with 2+ GPUs the DDP step adds up to 5 minutes):
#   1. bench/gan.py: ours against the DCGAN at 32x32 RGB, batches 64 and 1024, eager, at the
#      width of equal FLOPs per image (--width equal) and at the default 64; then ours under
#      reduce-overhead (CUDA graphs) at both batches and widths, one process each (a compile
#      takes about a minute). Every row has images/s and achieved TFLOP/s;
#   2. with 2+ GPUs, bench/gan_ddp.py: 1 process against torchrun on 2, equal per-GPU batch
#      (64 and 256, width 64);
#   3. bench/gan_photos.py: the GAN at 128 px (1,500 steps, width 64, batch 64) on the
#      hymenoptera photos (ants and bees, non-square, letterboxed), FD / precision / recall on
#      their test split, the sample grid and the gate's decision;
#   4. with CHECK=1, bench/gpu_check.py (the CUDA path end to end; about 2 minutes more).
# Usage, from the repository root:  OUT=somewhere [CHECK=1] bash bench/gpu_session.sh [HYMENOPTERA_TARBALL]
# Each step has its own time limit and writes its own files, so one failing step or one
# cut short leaves the others' figures in $OUT.
set -u
out=${OUT:-bench/results/gpu}
tarball=${1:-../shared/datasets/hymenoptera-256.tar.gz}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
fast=${FAST:-0}  # FAST=1: a few small steps of everything, to check the script itself on a CPU

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cpus', __import__('os').cpu_count())"
} > "$out/card.txt" 2>&1
cat "$out/card.txt"
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)

if [ "$fast" = 1 ]; then
    devices=cpu; steps=(--steps 2); photo_steps=(--steps 4 --width 8 --batch 8 --resolution 32); limit=300
    batches=(8 32); per_gpu=(4 8); gpus=2; photo_limit=600
    photo_set=(--set synthesis.gate.seeds=1 synthesis.gate.classifier_epochs=1 "synthesis.gate.ratios=[0.5]")
else
    devices=cuda; steps=(); photo_steps=(--steps 1500 --width 64 --batch 64 --resolution 128); limit=65
    batches=(64 1024); per_gpu=(64 256); photo_limit=200; photo_set=()
fi

for width in equal 64; do
    echo "== gan.py eager, width $width $(date +%T)"
    timeout 50 "$py" bench/gan.py --devices $devices --resolution 32 --channels 3 \
        --batches "${batches[@]}" --width $width "${steps[@]}" >> "$out/gan.jsonl" 2>> "$out/gan.err"
    echo "rc=$?"
done
cat "$out/gan.jsonl"

small=${batches[0]} big=${batches[1]}
for run in "$small equal" "$big equal" "$small 64" "$big 64"; do
    set -- $run
    echo "== gan.py reduce-overhead, batch $1, width $2 $(date +%T)"
    timeout $limit "$py" bench/gan.py --devices $devices --resolution 32 --channels 3 \
        --batches "$1" --width "$2" --compile reduce-overhead "${steps[@]}" \
        >> "$out/gan_compiled.jsonl" 2>> "$out/gan_compiled.err"
    echo "rc=$?"
done
cat "$out/gan_compiled.jsonl"

if [ "$gpus" -ge 2 ]; then
    for batch in "${per_gpu[@]}"; do
        echo "== gan_ddp.py, per-process batch $batch $(date +%T)"
        timeout 60 "$py" bench/gan_ddp.py --device $devices --per-process-batch "$batch" "${steps[@]}" \
            >> "$out/gan_ddp.jsonl" 2>> "$out/gan_ddp.err"
        timeout 90 "$py" -m torch.distributed.run --standalone --nproc-per-node 2 bench/gan_ddp.py \
            --device $devices --per-process-batch "$batch" "${steps[@]}" >> "$out/gan_ddp.jsonl" 2>> "$out/gan_ddp.err"
        echo "rc=$?"
    done
    cat "$out/gan_ddp.jsonl"
else
    echo "== gan_ddp.py: one GPU here, the 2-GPU scaling is not measured"
fi

echo "== gan_photos.py $(date +%T)"
if [ -f "$tarball" ]; then
    timeout $photo_limit "$py" bench/gan_photos.py --tarball "$tarball" --device $devices \
        "${photo_steps[@]}" --out "$out" "${photo_set[@]}" > "$out/photos.log" 2>&1
    echo "rc=$?"; tail -40 "$out/photos.log"
else
    echo "no $tarball: skipped"
fi

if [ "${CHECK:-0}" = 1 ] && [ "$fast" != 1 ]; then
    echo "== gpu_check $(date +%T)"
    timeout 200 "$py" bench/gpu_check.py > "$out/gpu_check.jsonl" 2> "$out/gpu_check.err"
    echo "rc=$?"; cat "$out/gpu_check.jsonl"
fi
echo "== done $(date +%T)"
