#!/usr/bin/env bash
# Every dtype of the format (the safetensors ones: bool, integers, fp8_e8m0, fp64 beside
# bf16/fp16/fp32/fp8) through generate -> run under mpirun -> verify, at 1, 2 and 4
# processes: each output equals the checkpoint generated directly for the new placement
# (h5diff, not our code), verify accepts it, and the input is untouched.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
spec="b:bool:3,u8:u8:5,i8:i8:2x3,u16:u16:3,i16:i16:5,u32:u32:2,i32:i32:3,u64:u64:2,i64:i64:3"
spec+=",s:fp8_e8m0:7,d:fp64:2x2,h:bf16:4,f:fp16:3,w:fp32:2,e4:fp8_e4m3:5,e5:fp8_e5m2:3"
case_idx=100
for np in 1 2 4; do
  case_idx=$((case_idx + 1))
  d="$work/c$case_idx"; mkdir -p "$d"
  python3 "$here/placements.py" random "$case_idx" "$np" 3 $((np * 3 - 1)) 2 "$d"
  mpi "$np" "$tool" generate --placement "$d/old.json" --tensors "$spec" --seed "$case_idx" --output "$d/in" >/dev/null
  mpi 1 "$tool" generate --placement "$d/new.json" --tensors "$spec" --seed "$case_idx" --output "$d/want" >/dev/null
  before=$(tree_hash "$d/in")
  expect_exit 0 "$d/run.log" -- mpi "$np" "$tool" --old "$d/old.json" --new "$d/new.json" \
    --input "$d/in" --output "$d/out" --backend mpi
  expect_same_checkpoint "$d/out" "$d/want"
  expect_exit 0 "$d/verify.log" -- mpi "$np" "$tool" verify --checkpoint "$d/out" --seed "$case_idx"
  [[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "case $case_idx: input modified"
done
finish
