#!/usr/bin/env bash
# The GPU checks and benchmarks in one go, for a machine with NVIDIA GPUs:
#   scripts/gpu-suite.sh BIN_DIR OUT_DIR [STEPS...]
# BIN_DIR holds eplb-rebalance and mpi_transport; logs go to OUT_DIR. STEPS (default: all):
#   gputests     test/gpu/*.sh: transport conformance (mpi + nccl) at 2..N GPUs, NCCL vs MPI
#                byte-identical rebalance at N GPUs
#   bench        `bench` for both model shapes at 2 and N GPUs (BENCH_SIZES="2 4" overrides)
#   e2e          disk-to-disk rebalance with NCCL and MPI + sequential disk roofline
# Each step is bounded by `timeout`, so a hang costs its limit, not the whole run.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(realpath "$1"); out=$(realpath -m "$2"); shift 2
steps=("${@:-gputests bench e2e}"); steps=(${steps[*]})
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
n=$(nvidia-smi -L | grep -c '^GPU')
sizes=(2); [[ $n -gt 2 ]] && sizes+=("$n")
[[ -n "${BENCH_SIZES:-}" ]] && sizes=($BENCH_SIZES)
summary="$out/summary.txt"; : > "$summary"
note() { echo "$*" | tee -a "$summary"; }
nvidia-smi -L | tee -a "$summary"
# timed VAR cmd...: runs cmd, sets VAR to its wall seconds, returns its exit code.
timed() { local __v=$1 t0 rc; shift; t0=$(date +%s.%N); "$@"; rc=$?
  printf -v "$__v" "%s" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')"; return $rc; }

for step in "${steps[@]}"; do case $step in
gputests)
  for t in "$root"/test/gpu/test_*.sh; do
    timeout "${TEST_TIMEOUT:-200}" bash "$t" "$bin/eplb-rebalance" > "$out/$(basename "$t" .sh).log" 2>&1
    note "$(basename "$t"): exit $? ($(tail -1 "$out/$(basename "$t" .sh).log"))"
  done ;;
bench)
  for np in "${sizes[@]}"; do
    for model in qwen3-30b-a3b deepseek-v3; do
      layers=2; [[ $model == qwen3-30b-a3b ]] && layers=16
      log="$out/bench-$model-np$np.log"
      timeout "${BENCH_TIMEOUT:-150}" mpirun -np "$np" "$bin/eplb-rebalance" bench --model "$root/configs/models/$model.json" \
        --layers "$layers" --iterations 5 > "$log" 2>&1
      note "bench $model np=$np: exit $?"; grep -E "^(bench|method|ours|raw|vLLM|ratios|device)" "$log" | tee -a "$summary"
    done
  done ;;
e2e)
  np=$n; d=$(mktemp -d /tmp/eplb-e2e.XXXX)
  python3 - "$d" "$np" <<'PY'
import json, random, sys
d, ep = sys.argv[1], int(sys.argv[2])
experts, slots, layers = 8 * ep, 9, 6
rng = random.Random(3)
def layer():
    ids = list(range(experts)) + [rng.randrange(experts) for _ in range(ep * slots - experts)]
    rng.shuffle(ids); return ids
for name in ("old", "new"):
    json.dump({"format": "eplb-placement", "version": 1, "ep_size": ep, "num_slots_per_rank": slots,
               "physical_to_logical_map": [layer() for _ in range(layers)]}, open(f"{d}/{name}.json", "w"))
PY
  tensors="w13:fp8_e4m3:4096x7168,w2:fp8_e4m3:7168x2048,w13_scale:fp32:32x56,w2_scale:fp32:56x16"
  mpirun -np "$np" "$bin/eplb-rebalance" generate --placement "$d/old.json" --tensors "$tensors" --seed 5 --output "$d/in" > "$out/e2e.log" 2>&1
  bytes=$(du -sb "$d/in" | cut -f1); note "e2e: checkpoint $((bytes / 1000000)) MB on $np ranks"
  for backend in nccl mpi; do
    sync
    timed secs mpirun -np "$np" "$bin/eplb-rebalance" --old "$d/old.json" --new "$d/new.json" \
      --input "$d/in" --output "$d/out-$backend" --backend "$backend" >> "$out/e2e.log" 2>&1
    note "e2e $backend: exit $?, ${secs} s wall; $(grep -E 'rebalanced|time  ' "$out/e2e.log" | tail -2 | tr '\n' ' ')"
    mpirun -np "$np" "$bin/eplb-rebalance" verify --checkpoint "$d/out-$backend" --seed 5 >> "$out/e2e.log" 2>&1
    note "verify $backend: exit $?"
    rm -rf "$d/out-$backend"
  done
  # Sequential roofline on the same disk: write then read the same number of bytes, direct I/O.
  mb=$((bytes / 1048576))
  timed w dd if=/dev/zero of="$d/seq" bs=1M count="$mb" oflag=direct 2>/dev/null
  timed r dd if="$d/seq" of=/dev/null bs=1M iflag=direct 2>/dev/null
  note "roofline: write $mb MiB in ${w} s, read in ${r} s (dd, direct I/O)"
  rm -rf "$d" ;;
esac; done
echo "== summary"; cat "$summary"
