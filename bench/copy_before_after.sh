#!/usr/bin/env bash
# Copy mode (`run --input X --output Y`, MPI backend) before and after a change, on the
# same synthetic checkpoint (as bench/e2e_disk.sh makes it), alternating binaries ROUNDS
# times, the input evicted from the page cache before each run. Per run: mpirun's wall
# time, the run's own seconds.total and phases (--json), and the CPU-seconds and page
# faults of every process (`perf stat` over mpirun; on a shared 2-core machine the
# CPU-seconds are the steadier figure). Outputs must be byte-identical to the first run's.
# The new binary's runs add --roofline (excluded from seconds.total).
#   usage: [RUN_ARGS="--max-staging-bytes N"] bench/copy_before_after.sh OLD_BIN NEW_BIN WORK_DIR \
#          [NP] [SLOTS] [LAYERS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OLD=$(realpath "$1")/eplb-rebalance; NEW=$(realpath "$2")/eplb-rebalance; work=$(realpath -m "$3")
np=${4:-2}; slots=${5:-4}; layers=${6:-4}; rounds=${7:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$work"; mkdir -p "$work"; cd "$work"
/usr/bin/python3 "$here/placements.py" . "$np" "$slots" "$layers"
tensors="w13:fp8_e4m3:4096x7168,w2:fp8_e4m3:7168x2048,w13_scale:fp32:32x56,w2_scale:fp32:56x16"
mpirun -np "$np" "$NEW" generate --placement old.json --tensors "$tensors" --seed 5 --output in >/dev/null
evict() { sync; for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none; done; }
echo "${RUN_ARGS:-default staging budget}; checkpoint $(du -sb in | awk '{printf "%.2f", $1 / 1e9}') GB, $np ranks; $(nproc) cores; $(uname -r)"
for i in $(seq "$rounds"); do
  for which in old new; do
    B=$OLD; extra=""; [[ $which == new ]] && { B=$NEW; extra="--roofline"; }
    rm -rf out; evict in/*
    la=$(cut -d' ' -f1 /proc/loadavg)
    a=$(date +%s.%N)
    perf stat -x, -o perf.txt -e task-clock,page-faults,user_time,system_time -- \
      mpirun -np "$np" "$B" --old old.json --new new.json --input in --output out --backend mpi \
      --json run.json ${RUN_ARGS:-} $extra >/dev/null
    wall=$(awk -v a="$a" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
    if [[ ! -d first ]]; then mv out first; ok=first; else
      ok=identical; for f in first/*; do cmp -s "$f" "out/$(basename "$f")" || ok=DIFFERENT; done; fi
    /usr/bin/python3 - run.json perf.txt "$which" "$i" "$la" "$wall" "$ok" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["seconds"]
perf = {}
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0] and not line.startswith("#"):
        try: perf[f[2]] = float(f[0])
        except ValueError: pass
cpu = perf.get("task-clock", 0) / 1e3
user = perf.get("user_time", 0) / 1e9; sys_ = perf.get("system_time", 0) / 1e9
which, i, la, wall, ok = sys.argv[3:8]
line = (f"round {i} {which}: load {la}; mpirun {wall} s, run {s['total']:.2f} s (set-up {s['setup']:.2f}, "
        f"read {s['read']:.2f}, exchange {s['exchange']:.2f}, write {s['write']:.2f}, commit {s['commit']:.2f}); "
        f"CPU {cpu:.1f} s (user {user:.1f}, sys {sys_:.1f}), {perf.get('page-faults', 0) / 1e3:.0f}k faults; "
        f"peak RSS {r['memory']['peak_rss_bytes'] / 2**20:.0f} MiB, staging {r['memory']['peak_host_staging_bytes'] / 2**20:.0f} MiB; output {ok}")
print(line)
if "roofline" in r:
    f = r["roofline"]; rs = f["seconds"]
    print(f"  roofline: concurrent {rs['concurrent']:.2f} s ({f['over_concurrent']:.2f}x), "
          f"single stream {rs['single_stream']:.2f} s ({f['over_single_stream']:.2f}x); io {f['io']['read']}/{f['io']['write']}")
PY
    rm -rf out
  done
done
cd /; rm -rf "$work"
