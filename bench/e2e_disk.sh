#!/usr/bin/env bash
# End-to-end (disk to disk) figure: rebalance a synthetic checkpoint with each backend of
# BACKENDS (default: mpi) and, in the same run on the same disk, measure the storage
# roofline with `run --roofline` (the tool's own: NP processes reading the input while NP
# write as many bytes, O_DIRECT, 1 MiB blocks; and one stream reading then writing it all;
# docs/CLI.md `bench --io`). Prints the run's time over each.
#   usage: [BACKENDS="nccl mpi"] bench/e2e_disk.sh BIN_DIR WORK_DIR [NP] [SLOTS_PER_RANK] [LAYERS]
# Defaults give a 2.1 GB checkpoint (4 ranks x 4 slots x 3 layers of 42 MiB FP8 experts).
# A backend may be written nccl:foreground: --backend nccl with EPLB_NCCL_SETUP=foreground
# (the NCCL set-up finished before the first read, as before issue 13), to compare with
# plain nccl (set-up in the background, behind the first reads) in the same call. Each run
# also prints its transport set-up: wall time, the part hidden behind the first reads and
# the part that held the main thread (run --json "transport_setup").
set -euo pipefail
bin=$(realpath "$1"); work=$(realpath -m "$2"); np=${3:-4}; slots=${4:-4}; layers=${5:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tool="$bin/eplb-rebalance"
rm -rf "$work"; mkdir -p "$work"
/usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/placements.py" "$work" "$np" "$slots" "$layers"
tensors="w13:fp8_e4m3:4096x7168,w2:fp8_e4m3:7168x2048,w13_scale:fp32:32x56,w2_scale:fp32:56x16"
mpirun --oversubscribe -np "$np" "$tool" generate --placement "$work/old.json" --tensors "$tensors" \
  --seed 5 --output "$work/in" >/dev/null
bytes=$(du -sb "$work/in" | cut -f1)
# Start cold: push the input out of the page cache (posix_fadvise DONTNEED via dd).
sync; for f in "$work"/in/*; do dd if="$f" iflag=nocache count=0 status=none; done
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
echo "checkpoint $(awk -v b="$bytes" 'BEGIN {printf "%.2f", b / 1e9}') GB, $np ranks"
for spec in ${BACKENDS:-mpi}; do
  backend=${spec%%:*}; setup=background; [[ $spec == *:* ]] && setup=${spec#*:}
  t0=$(now)
  # Every rank must see EPLB_NCCL_SETUP. Open MPI refuses -x next to an mca_base_env_list
  # (which the GPU machine's packed runtime sets): add it to that list then.
  if [[ -n ${OMPI_MCA_mca_base_env_list:-} ]]; then
    pass_env=(); export OMPI_MCA_mca_base_env_list="${OMPI_MCA_mca_base_env_list%;EPLB_NCCL_SETUP};EPLB_NCCL_SETUP"
  else pass_env=(-x EPLB_NCCL_SETUP); fi
  EPLB_NCCL_SETUP=$setup mpirun --oversubscribe -np "$np" "${pass_env[@]}" "$tool" \
    --old "$work/old.json" --new "$work/new.json" \
    --input "$work/in" --output "$work/out" --backend "$backend" --roofline \
    --json "$work/run-$spec.json" | tee "$work/run.log"
  t1=$(now)
  mpirun --oversubscribe -np "$np" "$tool" verify --checkpoint "$work/out" --seed 5 | tail -1
  echo "rebalance ($spec, mpirun wall, roofline included)  $(elapsed "$t0" "$t1") s"
  rm -rf "$work/out"
  sync; for f in "$work"/in/*; do dd if="$f" iflag=nocache count=0 status=none; done
  /usr/bin/python3 - "$work/run-$spec.json" "$spec" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["roofline"]
s = r["seconds"]
print(f"{sys.argv[2]}: run {r['job_seconds']:.2f} s; roofline concurrent {s['concurrent']:.2f} s "
      f"({r['over_concurrent']:.2f}x), single stream {s['single_stream']:.2f} s "
      f"({r['over_single_stream']:.2f}x); io {r['io']['read']}/{r['io']['write']}")
t, p = j["transport_setup"], j["seconds"]
print(f"{sys.argv[2]}: set-up before the first layer {p['setup']:.2f} s; transport set-up "
      f"{t['seconds']:.2f} s, hidden {t['hidden_seconds']:.2f} s, held the main thread "
      f"{t['blocked_seconds']:.2f} s; host buffers {t['host_alloc_seconds']:.2f} s; "
      f"read {p['read']:.2f} exchange {p['exchange']:.2f} write {p['write']:.2f} s")
PY
done
rm -rf "$work"
