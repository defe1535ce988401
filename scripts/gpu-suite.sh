#!/usr/bin/env bash
# The GPU checks and benchmarks in one go, for a machine with NVIDIA GPUs:
#   scripts/gpu-suite.sh BIN_DIR OUT_DIR [STEPS...]
# BIN_DIR holds eplb-rebalance and mpi_transport; logs go to OUT_DIR. STEPS (default: all):
#   gputests     test/gpu/*.sh: transport conformance (mpi + nccl) at 2..N GPUs, NCCL vs MPI
#                byte-identical rebalance at N GPUs
#   bench        `bench` for both model shapes at 2 and N GPUs (BENCH_SIZES="2 4" overrides)
#   e2e          bench/e2e_disk.sh with NCCL and MPI at N GPUs: disk to disk + roofline
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

for step in "${steps[@]}"; do case $step in
gputests)
  for t in "$root"/test/gpu/test_*.sh; do
    rc=0; timeout "${TEST_TIMEOUT:-200}" bash "$t" "$bin/eplb-rebalance" > "$out/$(basename "$t" .sh).log" 2>&1 || rc=$?
    note "$(basename "$t"): exit $rc ($(tail -1 "$out/$(basename "$t" .sh).log"))"
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
  BACKENDS="nccl mpi" timeout 500 bash "$root/bench/e2e_disk.sh" "$bin" /tmp/eplb-e2e "$n" 9 6 \
    > "$out/e2e.log" 2>&1
  note "e2e: exit $?"; grep -E "^(checkpoint|rebalance|sequential|roofline|verified|  time)" "$out/e2e.log" | tee -a "$summary" ;;
esac; done
echo "== summary"; cat "$summary"
