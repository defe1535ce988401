#!/usr/bin/env bash
# One call on the GPU machine (one node, NP GPUs, local NVMe) for docs/PERFORMANCE.md:
#   1. Hugging Face import and export of a ~5 GB DeepSeek-V3-like checkpoint against the
#      storage roofline measured right after each job (bench/hf_disk.sh, --roofline);
#   2. `run` disk to disk (copy mode, input cold) with --backend mpi, nccl and auto against
#      the roofline (bench/e2e_disk.sh, --roofline), ROUNDS times, backends alternating;
#      auto must say "backend: mpi (auto: all NP processes on one node; ..." and be as fast
#      as mpi. nccl:foreground is nccl with its set-up finished before the first read (as
#      before issue 13): nccl's "transport set-up ... hidden" line says how much of it the
#      first reads now hide, and the two runs' times what that saves;
#   3. copy against `run --in-place` (bench/in_place.sh, MPI, 2 processes, 4.84 GB, 20% of
#      the slots changed), both workloads: swaps and replicas (issue 13 item 5).
#   usage: bench/gpu_disk.sh BIN_DIR WORK_DIR [NP] [ROUNDS]
# Defaults: NP = the GPUs nvidia-smi lists (2 if none), 2 rounds. WORK_DIR on the NVMe
# (not /dev/shm); everything written there is removed at the end.
# Env: HF_EXPERTS/HF_LAYERS (default 28 x 4: 5.2 GB of HF files), E2E_SLOTS/E2E_LAYERS
# (default 9 x 6: 4.76 GB at NP=2, 9.5 GB at NP=4, the figures of the previous sessions),
# PYTHON (an interpreter with numpy; the first of /usr/bin/python3 and python3 that has it),
# SKIP_HF=1 (no part 1), SKIP_IN_PLACE=1 (no part 3), BACKENDS (part 2's, default "mpi nccl nccl:foreground auto").
set -euo pipefail
bin=$(realpath "$1"); work=$(realpath -m "$2")
np=${3:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}; [[ ${np:-0} -ge 1 ]] || np=2
rounds=${4:-2}
here=$(dirname "$(realpath "$0")")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
if [[ -z "${PYTHON:-}" ]]; then
  for p in /usr/bin/python3 python3; do
    if "$p" -c 'import numpy' 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
export PYTHON=${PYTHON:?no python3 with numpy found: set PYTHON}
mkdir -p "$work"
echo "== $(date -u '+%F %T') UTC, $(hostname), $np processes, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
nvidia-smi -L 2>/dev/null | head -8 || true
echo "work dir $work on $(df --output=source,fstype "$work" | tail -1)"
"$bin/eplb-rebalance" --version 2>/dev/null || true

if [[ ${SKIP_HF:-0} != 1 ]]; then
echo "== 1. import / export vs the roofline (bench/hf_disk.sh)"
for r in $(seq "$rounds"); do
  echo "-- round $r"
  bash "$here/hf_disk.sh" "$bin" "$work/hf" "$np" "${HF_EXPERTS:-28}" "${HF_LAYERS:-4}"
done
fi

echo "== 2. run disk to disk: mpi, nccl, auto vs the roofline (bench/e2e_disk.sh)"
for r in $(seq "$rounds"); do
  echo "-- round $r"
  order=${BACKENDS:-mpi nccl nccl:foreground auto}; [[ $((r % 2)) -eq 0 ]] && order=$(echo $order | tr " " "\n" | tac | tr "\n" " ")
  BACKENDS="$order" bash "$here/e2e_disk.sh" "$bin" "$work/e2e" "$np" "${E2E_SLOTS:-9}" \
    "${E2E_LAYERS:-6}" 2>&1 | grep -E "^checkpoint|^backend: |rebalanced|  time |  set-up |^verified|^rebalance \(|: run .* roofline|: set-up before"
done
if [[ ${SKIP_IN_PLACE:-0} != 1 ]]; then
echo "== 3. copy vs run --in-place (bench/in_place.sh, 2 processes, 4.84 GB)"
for workload in swaps replicas; do
  WORKLOAD=$workload ROUNDS=$rounds bash "$here/in_place.sh" "$bin" "$work/ip" 2 16 96 2>&1 \
    | grep -E "^checkpoint|^disk|^round|^[0-9]|^rows journaled|^disk bytes|^in-place phases|^  (read|read_wait|agree_layer|exchange|journal_write|journal_wait|overwrite) "
done
fi
rm -rf "$work/hf" "$work/e2e" "$work/ip"
echo "== done $(date -u '+%F %T') UTC"
