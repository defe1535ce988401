#!/usr/bin/env bash
# 52 random placement pairs (replicas, two copies on one rank, empty slots) at 1, 2, 4 and
# 8 processes, with fp8, bf16, fp16 and fp32 tensors of different shapes: every output equals
# the checkpoint generated directly for the new placement, and the input is untouched.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
specs=("w13:fp8_e4m3:24x16,w2:bf16:16x12,w13_scale:fp32:3x2"
       "w1:bf16:8x8,w3:fp8_e5m2:8x8,w2:fp16:8x4"
       "w:fp32:5")
case_idx=0
for np in 1 2 4 8; do
  for i in $(seq 1 13); do
    case_idx=$((case_idx + 1))
    d="$work/c$case_idx"; mkdir -p "$d"
    slots=$((1 + case_idx % 4)); experts=$((np * slots - case_idx % 2)); [[ $experts -lt 1 ]] && experts=1
    python3 "$here/placements.py" random "$case_idx" "$np" "$slots" "$experts" 3 "$d"
    spec=${specs[$((case_idx % 3))]}
    mpi "$np" "$tool" generate --placement "$d/old.json" --tensors "$spec" --seed "$case_idx" --output "$d/in" >/dev/null
    mpi 1 "$tool" generate --placement "$d/new.json" --tensors "$spec" --seed "$case_idx" --output "$d/want" >/dev/null
    before=$(tree_hash "$d/in")
    expect_exit 0 "$d/run.log" -- mpi "$np" "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts \
      --input "$d/in" --output "$d/out" --backend mpi
    expect_same_checkpoint "$d/out" "$d/want"
    [[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "case $case_idx: input modified"
    rm -rf "$d/in" "$d/want"
  done
done
# Spot-check with our own verifier too (independent of h5diff above).
expect_exit 0 "$work/verify.log" -- mpi 4 "$tool" verify --checkpoint "$work/c52/out" --seed 52
finish
