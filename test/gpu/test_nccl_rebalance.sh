#!/usr/bin/env bash
# Same bytes: the NCCL and MPI backends write identical checkpoints (h5diff where present,
# and `verify --seed` against the generator), one process per GPU, with a small staging
# budget so that layers are split into several rounds; once with one EP rank per process and
# once with two.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
np=$ngpu
# Case 1: one EP rank per process. Case 2: each process hosts two EP ranks, so messages
# between EP ranks of one process are local copies and those of two processes share one
# NCCL stream.
for ep in "$np" $((2 * np)); do
d="$work/ep$ep"; mkdir -p "$d"
python3 - "$d" "$ep" <<'PY'
import json, random, sys
out, ep = sys.argv[1], int(sys.argv[2])
slots, experts, layers = 6, ep * 5, 4
rng = random.Random(5 + ep)
def layer():
    ids = list(range(experts)) + [rng.randrange(experts) for _ in range(ep * slots - experts)]
    rng.shuffle(ids)
    return ids
old = [layer() for _ in range(layers)]
new = [layer() for _ in range(layers)]
new[1][0] = -1
for name, m in (("old", old), ("new", new)):
    json.dump({"format": "eplb-placement", "version": 1, "ep_size": ep, "num_slots_per_rank": slots,
               "num_logical_experts": experts, "physical_to_logical_map": m}, open(f"{out}/{name}.json", "w"))
PY
tensors="w13:fp8_e4m3:512x256,w2:bf16:256x128,w13_scale:fp32:4x2"
timeout 60 mpirun -np "$np" "$tool" generate --placement "$d/old.json" --tensors "$tensors" --seed 9 --output "$d/in" >/dev/null
for backend in nccl mpi; do
  if timeout 120 mpirun -np "$np" "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts --input "$d/in" \
       --output "$d/out-$backend" --backend "$backend" --max-staging-bytes 1MiB > "$d/$backend.log" 2>&1; then
    pass; echo "EP $ep on $np processes:"; grep -E "backend|rebalanced|moved" "$d/$backend.log"
  else
    fail "EP $ep: $backend run"; cat "$d/$backend.log" >&2
  fi
  mpirun -np "$np" "$tool" verify --checkpoint "$d/out-$backend" --placement "$d/new.json" --seed 9 \
    > "$d/verify-$backend.log" 2>&1 && pass || { fail "EP $ep: verify $backend"; cat "$d/verify-$backend.log" >&2; }
done
grep -q "backend: nccl" "$d/nccl.log" && pass || fail "EP $ep: nccl run did not use the NCCL backend"
for f in "$d"/out-mpi/rank-*.h5; do
  b=$(basename "$f")
  if command -v h5diff >/dev/null; then
    h5diff -q "$f" "$d/out-nccl/$b" && pass || fail "EP $ep: $b differs between backends (h5diff)"
  fi
done
# The manifests list each file's xxh3: equal files, equal lists.
python3 -c "
import json,sys
a=json.load(open('$d/out-mpi/manifest.json'))['files']; b=json.load(open('$d/out-nccl/manifest.json'))['files']
print('shard checksums equal' if a==b else 'shard checksums differ'); sys.exit(0 if a==b else 1)" && pass || fail "EP $ep: manifests differ"
done

# NCCL set-up in the background (issue 13): the CUDA context, device staging and
# communicator are made while the first layers are read; the report and --json say how
# long that took and how much of it stayed hidden, -v names the steps.
d="$work/ep$np"
if timeout 120 mpirun -np "$np" "$tool" -v --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts \
     --input "$d/in" --output "$d/out-setup" --backend nccl --json "$d/setup.json" > "$d/setup.log" 2>&1; then
  pass; grep -E "  set-up |set-up .* in the background" "$d/setup.log"
else
  fail "nccl run with --json"; cat "$d/setup.log" >&2
fi
python3 - "$d/setup.json" <<'PY' && pass || fail "transport_setup in --json: $(cat "$d/setup.json")"
import json, sys
t = json.load(open(sys.argv[1]))["transport_setup"]
assert set(t) == {"seconds", "blocked_seconds", "hidden_seconds", "host_alloc_seconds"}, t
assert t["seconds"] > 0 and 0 <= t["hidden_seconds"] <= t["seconds"], t
assert t["blocked_seconds"] >= 0 and t["host_alloc_seconds"] >= 0, t
PY
grep -qE "  set-up     nccl transport [0-9.]+ s, [0-9.]+ s of it hidden behind the first reads" \
  "$d/setup.log" && pass || fail "no set-up line in the report"
grep -q "page-locked in the background" "$d/setup.log" && pass || fail "no -v set-up steps"
mpirun -np "$np" "$tool" verify --checkpoint "$d/out-setup" --placement "$d/new.json" --seed 9 \
  > "$d/verify-setup.log" 2>&1 && pass || fail "verify after the --json run"

# A rank whose background set-up fails (after its peers started the communicator) ends
# every rank cleanly: exit 4, its message, no output or staging left, and no wait for
# --timeout.
bad=$((np - 1)); rc=0; start=$(date +%s)
EPLB_FAULT_NCCL_SETUP=$bad timeout 120 mpirun -np "$np" "$tool" --old "$d/old.json" --new "$d/new.json" \
  --allow-dropping-experts --input "$d/in" --output "$d/out-fault" --backend nccl --timeout 60 \
  > "$d/fault.log" 2>&1 || rc=$?
took=$(($(date +%s) - start))
[[ $rc -eq 4 ]] && pass || { fail "set-up fault: exit $rc, expected 4"; cat "$d/fault.log" >&2; }
grep -q "EPLB_FAULT_NCCL_SETUP: the NCCL set-up of rank $bad fails (injected)" "$d/fault.log" && pass ||
  fail "set-up fault: message missing"
[[ $took -lt 45 ]] && pass || fail "set-up fault: took $took s (waited for the timeout?)"
[[ ! -e "$d/out-fault" && ! -e "$d/.out-fault.eplb-staging" ]] && pass || fail "set-up fault: output or staging left"
finish
