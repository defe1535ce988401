#!/usr/bin/env bash
# The test vectors of placements.py, end to end under mpirun: each output equals a checkpoint
# generated directly for the new placement (h5diff), verifies, and the input is untouched.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tensors="w13:fp8_e4m3:16x8,w2:bf16:8x8,w13_scale:fp32:2x1"

for name in identity swap replicate scale_up scale_down; do
  d="$work/$name"; mkdir -p "$d"
  python3 "$here/placements.py" vector "$name" "$d"
  np=$(python3 -c "import json,sys; a=json.load(open('$d/old.json'));b=json.load(open('$d/new.json')); print(max(a['ep_size'],b['ep_size']))")
  mpi 1 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --seed 11 --output "$d/in" >/dev/null
  mpi 1 "$tool" generate --placement "$d/new.json" --tensors "$tensors" --seed 11 --output "$d/want" >/dev/null
  before=$(tree_hash "$d/in")
  # replicate (vector 3) no longer holds experts 2 and 3: it needs the flag.
  expect_exit 0 "$d/run.log" -- mpi "$np" "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts \
    --input "$d/in" --output "$d/out" --backend mpi
  expect_same_checkpoint "$d/out" "$d/want"
  [[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "$name: input modified"
  expect_exit 0 "$d/verify.log" -- mpi 2 "$tool" verify --checkpoint "$d/out" --placement "$d/new.json" --seed 11
done

# Vector 1: nothing moves. Vector 2: one expert each way. Vector 3: one receive + one local copy.
expect_in "$work/identity/run.log" "moved      0 experts in 0 messages"
expect_in "$work/swap/run.log" "moved      2 experts in 2 messages"
expect_in "$work/replicate/run.log" "moved      1 experts in 1 messages"
expect_in "$work/replicate/run.log" "local      2 rows copied"
# Identity: the output shards hold the same bytes as the input's.
expect_same_checkpoint "$work/identity/out" "$work/identity/in"

# SGLang's form (no ep_size in the file): --old takes the checkpoint's, --new the old one's.
d="$work/swap"
for n in old new; do
  python3 -c "import json,sys; p=json.load(open('$d/$n.json')); json.dump({'physical_to_logical_map': p['physical_to_logical_map']}, open('$d/$n-sglang.json','w'))"
done
expect_exit 0 "$d/sglang.log" -- mpi 2 "$tool" --old "$d/old-sglang.json" --new "$d/new-sglang.json" \
  --input "$d/in" --output "$d/out-sglang" --backend mpi
expect_same_checkpoint "$d/out-sglang" "$d/want"
expect_exit 0 "$d/verify-sglang.log" -- "$tool" verify --checkpoint "$d/out-sglang" --placement "$d/new-sglang.json"

# Vector 5: an expert no old slot holds -> exit 2 before anything moves, nothing written.
d="$work/invalid"; mkdir -p "$d"
python3 "$here/placements.py" vector invalid "$d"
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --output "$d/in" >/dev/null
expect_exit 2 "$d/run.log" -- mpi 2 "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts \
  --input "$d/in" --output "$d/out"
expect_in "$d/run.log" "logical expert 4"
expect_no_output "$d/out"
finish
