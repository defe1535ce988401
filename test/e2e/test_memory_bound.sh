#!/usr/bin/env bash
# Bounded memory: peak host memory per process does not grow with the number of layers.
# The same 4 MiB-per-slot layers, 2 vs 16 of them: the peaks must differ by less than
# three layers of one shard (the engine holds one old and one new layer).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tensors="w13:fp8_e4m3:1024x2048,w2:bf16:512x2048"   # 4 MiB per expert
peak_mib() { sed -n 's/.*memory     peak \([0-9.]*\) GiB.*/\1/p' "$1" | awk '{printf "%d", $1 * 1024}'; }
for layers in 2 16; do
  d="$work/l$layers"; mkdir -p "$d"
  python3 "$here/placements.py" random 3 2 3 5 "$layers" "$d"
  mpi 2 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --output "$d/in" >/dev/null
  expect_exit 0 "$d/run.log" -- mpi 2 "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts \
    --input "$d/in" --output "$d/out" --backend mpi
  echo "$layers layers: peak $(peak_mib "$d/run.log") MiB per process"
  rm -rf "$d/in" "$d/out"
done
small=$(peak_mib "$work/l2/run.log"); large=$(peak_mib "$work/l16/run.log")
layer_mib=12   # 3 slots x 4 MiB
[[ -n "$small" && -n "$large" && $small -gt 0 ]] && pass || fail "no memory figure printed"
if (( large - small < 3 * layer_mib )); then pass
else fail "peak grew from $small MiB (2 layers) to $large MiB (16 layers)"; fi
# Holding the whole input would have cost 16 layers x 12 MiB more: the check can fail.
finish
