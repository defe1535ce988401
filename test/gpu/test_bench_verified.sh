#!/usr/bin/env bash
# `bench` checks its own output: after the first run of ours and of the vLLM pattern, every
# row of every GPU is compared byte for byte with the expected weights. This runs it where
# our pipeline takes its ramped path (2 GiB staging: pieces of 64, 128, 256 MiB at both
# ends of each stream) and its many-rounds path (64 MiB staging), and fails unless both
# methods report "yes".
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [[ $ngpu -lt 2 ]]; then echo "SKIP: bench needs 2 GPUs"; exit 77; fi
model="$here/../../configs/models/qwen3-30b-a3b.json"
small="w13:bf16:768x1024,w2:bf16:1024x384"  # 2.25 MiB experts: 1.1 GB per GPU at 2 GPUs
for staging in 2GiB 64MiB; do
  log="$work/bench-$staging.log"
  if timeout 120 mpirun -np "$ngpu" "$tool" bench --model "$model" --tensors "$small" --layers 16 \
       --iterations 1 --warmup 0 --max-staging-bytes "$staging" > "$log" 2>&1; then
    pass
  else
    fail "bench with $staging staging"; cat "$log" >&2; continue
  fi
  grep -E "^(ours \(packed|vLLM pattern|ratios)" "$log" | sed "s/^/$staging: /"
  for method in "ours (packed, balanced)" "vLLM pattern (per tensor)"; do
    verdict=$(grep -F "$method" "$log" | awk '{print $NF}')
    [[ $verdict == yes ]] && pass || fail "$staging staging: '$method' verified: '${verdict:-missing}'"
  done
done
finish
