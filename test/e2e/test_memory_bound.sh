#!/usr/bin/env bash
# Bounded memory (docs/ARCHITECTURE.md, the pipeline):
#  1. peak host memory per process does not grow with the number of layers: the same
#     4 MiB-per-slot layers, 2 vs 16 of them, under one budget that holds two old and two
#     new layers either way; the peaks must differ by less than three layers of one shard;
#  2. a checkpoint several times larger than --max-staging-bytes: the reported staging
#     peak is within the budget, and so is the growth of the resident peak over that of a
#     tiny run (same processes, one small layer), give or take 8 MiB of caches.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tensors="w13:fp8_e4m3:1024x2048,w2:bf16:512x2048"   # 4 MiB per expert
peak_mib() {
  sed -n 's/.*memory     peak \([0-9.]*\) \([KMGT]*i*B\) resident.*/\1 \2/p' "$1" |
    awk '{f = $2 == "GiB" ? 1024 : $2 == "MiB" ? 1 : $2 == "KiB" ? 1 / 1024 : 1 / 1048576; printf "%d", $1 * f}'
}
json() { /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
for layers in 2 16; do
  d="$work/l$layers"; mkdir -p "$d"
  python3 "$here/placements.py" random 3 2 3 5 "$layers" "$d"
  mpi 2 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --output "$d/in" >/dev/null
  expect_exit 0 "$d/run.log" -- mpi 2 "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts \
    --input "$d/in" --output "$d/out" --backend mpi --max-staging-bytes 50MiB
  echo "$layers layers: peak $(peak_mib "$d/run.log") MiB per process"
  rm -rf "$d/in" "$d/out"
done
small=$(peak_mib "$work/l2/run.log"); large=$(peak_mib "$work/l16/run.log")
layer_mib=12   # 3 slots x 4 MiB
[[ -n "$small" && -n "$large" && $small -gt 0 ]] && pass || fail "no memory figure printed"
if (( large - small < 3 * layer_mib )); then pass
else fail "peak grew from $small MiB (2 layers) to $large MiB (16 layers)"; fi
# Holding the whole input would have cost 16 layers x 12 MiB more: the check can fail.

# 2. 24 layers of 6 MiB per process (144 MiB each, 288 MiB in all) under a 20 MiB budget (two old layers and one new).
budget_mib=20
d="$work/big"; mkdir -p "$d/tiny"
python3 "$here/placements.py" random 5 2 3 5 24 "$d"
python3 "$here/placements.py" random 5 2 3 5 1 "$d/tiny"
mpi 2 "$tool" generate --placement "$d/old.json" --tensors "w:bf16:1024x1024" --output "$d/in" >/dev/null
mpi 2 "$tool" generate --placement "$d/tiny/old.json" --tensors "w:bf16:4x4" --output "$d/tiny/in" >/dev/null
expect_exit 0 "$d/tiny.log" -- mpi 2 "$tool" --old "$d/tiny/old.json" --new "$d/tiny/new.json" \
  --allow-dropping-experts --input "$d/tiny/in" --output "$d/tiny/out" --backend mpi --json "$d/tiny.json"
expect_exit 0 "$d/run.log" -- mpi 2 "$tool" -v --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts \
  --input "$d/in" --output "$d/out" --backend mpi --max-staging-bytes ${budget_mib}MiB --json "$d/run.json"
expect_exit 0 "$d/verify.log" -- mpi 2 "$tool" verify --checkpoint "$d/out" --placement "$d/new.json"
input_mib=$(( $(du -sb "$d/in" | cut -f1) >> 20 ))
budget=$(json "$d/run.json" 'r["memory"]["staging_budget_bytes"]')
staging=$(json "$d/run.json" 'r["memory"]["peak_staging_bytes"]')
rss=$(json "$d/run.json" 'r["memory"]["peak_rss_bytes"]')
base=$(json "$d/tiny.json" 'r["memory"]["peak_rss_bytes"]')
ahead=$(json "$d/run.json" 'r["pipeline"]["layers_read_ahead"]')
echo "input $input_mib MiB; budget $((budget >> 20)) MiB; staging peak $((staging >> 10)) KiB;" \
  "resident peak $((rss >> 20)) MiB, $((base >> 20)) MiB for a tiny run; $ahead layers read ahead"
(( input_mib >= 10 * budget_mib )) && pass || fail "the checkpoint ($input_mib MiB) is not much larger than the budget"
(( budget == budget_mib << 20 )) && pass || fail "reported budget $budget"
(( staging > 0 && staging <= budget )) && pass || fail "staging peak $staging above the budget $budget"
(( ahead >= 2 )) && pass || fail "the budget holds two old layers, but $ahead are read ahead"
# Beyond the staging buffers a run holds a few MiB that do not depend on the checkpoint's
# size (HDF5's metadata caches of 24 layers' objects, MPI's message buffers): 8 MiB allowed.
(( rss - base <= budget + (8 << 20) )) && pass || fail "resident peak grew by $(( (rss - base) >> 20 )) MiB over a tiny run's, above the budget + 8 MiB"
expect_in "$d/run.log" "pipeline: 2 layers of old rows (read ahead)"
finish
