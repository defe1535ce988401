#!/usr/bin/env bash
# import/export before and after a change on the same data, alternating binaries, ROUNDS
# times; the new binary's jobs with --roofline (a shared machine: repeat, give the spread);
# both report their own seconds.total (--json), which excludes mpirun and the roofline.
#   usage: bench/hf_before_after.sh OLD_BIN NEW_BIN DIR [ROUNDS]
# DIR holds hf/ and p.json as `KEEP=1 bench/hf_disk.sh BIN DIR` leaves them.
set -u
OLD=$(realpath "$1")/eplb-rebalance; NEW=$(realpath "$2")/eplb-rebalance; cd "$3"; rounds=${4:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
evict() { sync; for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none; done; }
t() { local a=$(date +%s.%N); "$@" >/dev/null 2>&1 || echo "FAILED: $*"; awk -v a=$a -v b=$(date +%s.%N) 'BEGIN{printf "%.2f", b-a}'; }
for i in $(seq "$rounds"); do
  for which in old new; do
    B=$OLD; extra="--json $which-imp-$i.json"; [[ $which == new ]] && { B=$NEW; extra="--roofline $extra"; }
    rm -rf ck out; evict hf/*
    la=$(cut -d' ' -f1 /proc/loadavg)
    ti=$(t mpirun -np 2 $B import --hf hf --placement p.json --output ck $extra)
    evict hf/* ck/*
    extra="--json $which-exp-$i.json"; [[ $which == new ]] && extra="--roofline $extra"
    te=$(t mpirun -np 2 $B export --checkpoint ck --hf-base hf --output out $extra)
    ok=yes; for f in hf/*; do cmp -s $f out/$(basename $f) || ok=NO; done
    own=$(/usr/bin/python3 -c "import json,sys; print(' / '.join('%.2f' % json.load(open(p))['seconds']['total'] for p in sys.argv[1:]))" $which-imp-$i.json $which-exp-$i.json)
    echo "iter $i $which: load $la import ${ti}s export ${te}s (mpirun wall, roofline incl. for new); own seconds.total import / export: $own; identical=$ok"
    if [[ $which == new ]]; then
      /usr/bin/python3 - $which-imp-$i.json $which-exp-$i.json <<'PY'
import json, sys
for p in sys.argv[1:]:
    r = json.load(open(p)); f = r["roofline"]; s = f["seconds"]
    print(f"  {r['command']}: {r['seconds']['total']:.2f} s; concurrent {s['concurrent']:.2f} s ({f['over_concurrent']:.2f}x), single {s['single_stream']:.2f} s ({f['over_single_stream']:.2f}x), read {f['bytes']['read']/1e9:.3f} GB written {f['bytes']['written']/1e9:.3f} GB io {f['io']['read']}/{f['io']['write']}")
PY
    fi
  done
done
rm -rf ck out
