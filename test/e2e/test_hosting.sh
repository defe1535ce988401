#!/usr/bin/env bash
# A process may host several EP ranks: fewer processes than EP ranks (down to one) give
# exactly the checkpoint generated for the new placement, also with different old and new
# EP sizes; messages between EP ranks of one process never touch the transport.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
spec="w13:fp8_e4m3:16x8,w2:bf16:8x8,w13_scale:fp32:2x1"
case_idx=0
run_case() {  # run_case OLD_EP NEW_EP NP
  local old_ep=$1 new_ep=$2 np=$3
  case_idx=$((case_idx + 1))
  local d="$work/h$case_idx"; mkdir -p "$d"
  python3 "$here/placements.py" random "$((100 + case_idx))" "$old_ep" 3 $((old_ep * 2)) 3 "$d" "$new_ep"
  mpi 1 "$tool" generate --placement "$d/old.json" --tensors "$spec" --seed "$case_idx" --output "$d/in" >/dev/null
  mpi 1 "$tool" generate --placement "$d/new.json" --tensors "$spec" --seed "$case_idx" --output "$d/want" >/dev/null
  local before; before=$(tree_hash "$d/in")
  expect_exit 0 "$d/run.log" -- mpi "$np" "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts \
    --input "$d/in" --output "$d/out" --backend mpi
  expect_same_checkpoint "$d/out" "$d/want"
  [[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "case $case_idx: input modified"
}
run_case 4 4 1
run_case 4 4 2
run_case 8 8 3
run_case 8 8 8
run_case 3 5 2   # scale-up: EP ranks 3 and 4 only receive
run_case 6 4 4   # scale-down: EP ranks 4 and 5 only send
run_case 5 5 4   # uneven blocks: processes host 2, 2, 1 and 0 EP ranks
finish
