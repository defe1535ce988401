#!/usr/bin/env bash
# `run --in-place` alone, two or more builds alternated on one checkpoint, in the same run
# on the same disk: old -> new and back with each build in turn, input evicted before each
# run. Prints each run's wall time, its own total and the in-place phases that move bytes.
#   usage: bench/in_place_ab.sh WORK_DIR NP SLOTS LAYERS ROUNDS WORKLOAD BIN_DIR [BIN_DIR...]
# The checkpoint and placements come from bench/in_place.sh (WORKLOAD swaps or replicas).
set -euo pipefail
work=$(realpath -m "$1"); np=$2; slots=$3; layers=$4; rounds=$5; export WORKLOAD=$6
shift 6; bins=(); for b in "$@"; do bins+=("$(realpath "$b")"); done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
here=$(dirname "${BASH_SOURCE[0]}")
# ROUNDS=0: only the checkpoint, the placements and bench/in_place.sh's last in-place run
# (--check-files), which leaves the checkpoint in the new placement; its summary fails on
# the missing rounds, which is expected here.
ROUNDS=0 bash "$here/in_place.sh" "${bins[0]}" "$work" "$np" "$slots" "$layers" >/dev/null 2>&1 || true
[[ -f $work/ckpt/manifest.json ]] || { echo "bench/in_place.sh did not make $work/ckpt" >&2; exit 1; }
evict() { sync; for f in "$work"/ckpt/*; do [[ -f $f ]] && dd if="$f" iflag=nocache count=0 status=none; done; }
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); workload $WORKLOAD; checkpoint $(du -sb "$work/ckpt" | cut -f1) bytes"
forward=no  # the checkpoint holds the new placement: the first run goes back
for r in $(seq "$rounds"); do
  for bin in "${bins[@]}"; do
    for _ in 1 2; do
      if [[ $forward == yes ]]; then from=old; to=new; forward=no; else from=new; to=old; forward=yes; fi
      evict
      t0=$(date +%s.%N)
      mpirun -np "$np" "$bin/eplb-rebalance" run --in-place --old "$work/$from.json" --new "$work/$to.json" \
        --input "$work/ckpt" --backend mpi --json "$work/ab.json" >"$work/ab.log" 2>&1 \
        || { echo "run failed:" >&2; cat "$work/ab.log" >&2; exit 1; }
      t1=$(date +%s.%N)
      python3 - "$work/ab.json" "$bin" "$r" "$from -> $to" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
s = j["in_place"]["seconds"]
keys = ["read", "read_wait", "agree_layer", "exchange", "journal_write", "journal_wait", "journal_commit", "overwrite"]
print(f"round {sys.argv[3]} {sys.argv[2]} ({sys.argv[4]}): wall {float(sys.argv[5]):.2f} s, run {j['seconds']['total']:.2f} s; "
      + ", ".join(f"{k} {s[k]:.2f}" for k in keys if k in s))
PY
    done
  done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
