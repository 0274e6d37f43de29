#!/usr/bin/env bash
# The two GAN losses side by side on one GPU: bench/gan_quality.py on Fashion-MNIST with 100
# real images per class, hinge (betas 0/0.9, this project's default) and minimax (DCGAN's BCE,
# betas 0.5/0.999, the seed's), everything else equal; both runs at once (about 5 minutes on
# one H200). Usage, from the repository root:  OUT=somewhere bash bench/gpu_loss.sh [FASHION_TARBALL]
set -u
out=${OUT:-bench/results/gpu}
tarball=${1:-../shared/datasets/fashion-mnist.tar.gz}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
common=(--tarball "$tarball" --device "${DEVICE:-cuda}" --per-class 100 --steps "${STEPS:-3000}" --seeds 3)
timeout "${LIMIT:-500}" "$py" bench/gan_quality.py "${common[@]}" --loss hinge \
    --json "$out/quality-hinge.json" > "$out/quality-hinge.log" 2>&1 &
timeout "${LIMIT:-500}" "$py" bench/gan_quality.py "${common[@]}" --loss minimax --betas 0.5 0.999 \
    --json "$out/quality-minimax.json" > "$out/quality-minimax.log" 2>&1 &
wait
tail -3 "$out"/quality-*.log
