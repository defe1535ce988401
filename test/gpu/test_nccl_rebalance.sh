#!/usr/bin/env bash
# Same bytes: the NCCL and MPI backends write identical checkpoints (h5diff where present,
# and `verify --seed` against the generator), one process per GPU, with a small staging
# budget so that layers are split into several rounds.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
np=$ngpu
python3 - "$work" "$np" <<'PY'
import json, random, sys
out, ep = sys.argv[1], int(sys.argv[2])
slots, experts, layers = 6, ep * 5, 4
rng = random.Random(5)
def layer(cover):
    ids = list(range(experts)) + [rng.randrange(experts) for _ in range(ep * slots - experts)]
    rng.shuffle(ids)
    return ids
old = [layer(True) for _ in range(layers)]
new = [layer(True) for _ in range(layers)]
new[1][0] = -1
for name, m in (("old", old), ("new", new)):
    json.dump({"format": "eplb-placement", "version": 1, "ep_size": ep, "num_slots_per_rank": slots,
               "num_logical_experts": experts, "physical_to_logical_map": m}, open(f"{out}/{name}.json", "w"))
PY
tensors="w13:fp8_e4m3:512x256,w2:bf16:256x128,w13_scale:fp32:4x2"
timeout 60 mpirun -np "$np" "$tool" generate --placement "$work/old.json" --tensors "$tensors" --seed 9 --output "$work/in" >/dev/null
for backend in nccl mpi; do
  if timeout 120 mpirun -np "$np" "$tool" --old "$work/old.json" --new "$work/new.json" --input "$work/in" \
       --output "$work/out-$backend" --backend "$backend" --max-staging-bytes 1MiB > "$work/$backend.log" 2>&1; then
    pass; grep -E "backend|rebalanced|moved" "$work/$backend.log"
  else
    fail "$backend run"; cat "$work/$backend.log" >&2
  fi
  mpirun -np "$np" "$tool" verify --checkpoint "$work/out-$backend" --placement "$work/new.json" --seed 9 \
    > "$work/verify-$backend.log" 2>&1 && pass || { fail "verify $backend"; cat "$work/verify-$backend.log" >&2; }
done
grep -q "backend: nccl" "$work/nccl.log" && pass || fail "nccl run did not use the NCCL backend"
for f in "$work"/out-mpi/rank-*.h5; do
  b=$(basename "$f")
  if command -v h5diff >/dev/null; then
    h5diff -q "$f" "$work/out-nccl/$b" && pass || fail "$b differs between backends (h5diff)"
  fi
done
# The manifests list each file's xxh3: equal files, equal lists.
python3 -c "
import json,sys
a=json.load(open('$work/out-mpi/manifest.json'))['files']; b=json.load(open('$work/out-nccl/manifest.json'))['files']
print('shard checksums equal' if a==b else 'shard checksums differ'); sys.exit(0 if a==b else 1)" && pass || fail "manifests differ"
finish
