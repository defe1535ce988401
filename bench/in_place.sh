#!/usr/bin/env bash
# In-place versus copy (run --in-place vs run --output), side by side on one checkpoint, in
# the same run on the same disk, when a fraction of the slots change (default 20%).
#   usage: [BACKEND=mpi] [ROUNDS=2] [WORKLOAD=swaps|replicas] bench/in_place.sh BIN_DIR WORK_DIR [NP] [SLOTS] [LAYERS] [PERCENT]
# WORKLOAD=swaps (default): pairs of slots on different ranks swap their logical experts, so
#   nothing is dropped; every changed slot's new bytes come from a slot that changes too (the
#   worst case for an update in place: nothing it needs stays where it is).
# WORKLOAD=replicas: EPLB's usual change. A quarter or more of the slots are redundant
#   replicas; a changed slot drops a replica of an expert that keeps a copy in an unchanged
#   slot and takes an expert that also keeps a copy in an unchanged slot (redundant slots
#   following the load).
# Defaults: 2 processes x 16 slots x 24 layers of 1.5 MiB bf16 experts: a 1.21 GB checkpoint.
# Every timed run starts with the input evicted from the page cache (dd iflag=nocache).
# Each round: copy old -> new into a fresh output; in place old -> new; in place new -> old
# (restores it; timed too). The in-place result is compared byte for byte with the copy.
set -euo pipefail
bin=$(realpath "$1"); work=$(realpath -m "$2"); np=${3:-2}; slots=${4:-16}; layers=${5:-24}
percent=${6:-20}; backend=${BACKEND:-mpi}; rounds=${ROUNDS:-2}; workload=${WORKLOAD:-swaps}
case $workload in swaps | replicas) ;; *) echo "WORKLOAD must be swaps or replicas" >&2; exit 2 ;; esac
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tool="$bin/eplb-rebalance"
rm -rf "$work"; mkdir -p "$work"
python3 - "$work" "$np" "$slots" "$layers" "$percent" "$workload" <<'PY'
import json, random, sys
d, ep, slots, layers, percent = sys.argv[1], *map(int, sys.argv[2:6])
workload = sys.argv[6]
n = ep * slots
# replicas: enough redundant slots (1.5x the changed fraction) to move without losing an expert
experts = n - max(1, ep // 2) if workload == "swaps" else n - max(2, -(-n * percent * 3 // 200))
rng = random.Random(11)
old, new = [], []
for _ in range(layers):
    ids = list(range(experts)) + [rng.randrange(experts) for _ in range(n - experts)]
    rng.shuffle(ids)
    old.append(ids)
    new.append(list(ids))
# At least PERCENT of all slots change: swaps spread over the layers in turn, each between
# two slots of different ranks holding different experts, each slot swapped at most once.
if workload == "swaps":
    swaps = -(-n * layers * percent // 200)
    layer = done = 0
    while done < swaps:
        ids, ref = new[layer % layers], old[layer % layers]
        a, b = rng.sample(range(n), 2)
        if a // slots != b // slots and ids[a] != ids[b] and ids[a] == ref[a] and ids[b] == ref[b]:
            ids[a], ids[b] = ids[b], ids[a]
            done += 1
            layer += 1
else:
    # At least PERCENT of the slots of every layer change; a changed slot a drops expert x
    # (still held by an unchanged slot) for expert y (held by an unchanged slot, not a's rank).
    per_layer = -(-n * percent // 100)
    # The unchanged holders relied on are pinned: never changed afterwards.
    for ids, ref in zip(new, old):
        done = tries = 0
        pinned = set()
        while done < per_layer:
            tries += 1
            assert tries < 100000, "not enough redundant slots for this PERCENT"
            a, b = rng.sample(range(n), 2)
            x, y = ref[a], ref[b]
            if a in pinned or ids[a] != ref[a] or ids[b] != ref[b] or x == y or a // slots == b // slots:
                continue
            keep = [s for s in range(n) if s != a and ids[s] == ref[s] and ref[s] == x]
            if not keep:
                continue
            ids[a] = y
            pinned.update((b, keep[0]))
            done += 1
for name, rows in (("old", old), ("new", new)):
    json.dump({"format": "eplb-placement", "version": 1, "ep_size": ep, "num_slots_per_rank": slots,
               "physical_to_logical_map": rows}, open(f"{d}/{name}.json", "w"))
changed = sum(o != c for lo, ln in zip(old, new) for o, c in zip(lo, ln))
print(f"slots changed: {changed} of {n * layers} ({100 * changed / (n * layers):.1f}%)")
PY
tensors="w13:bf16:1024x512,w2:bf16:512x512"
mpirun -np "$np" "$tool" generate --placement "$work/old.json" --tensors "$tensors" --seed 5 \
  --output "$work/ckpt" >/dev/null
bytes=$(du -sb "$work/ckpt" | cut -f1)
evict() { sync; for f in "$1"/*; do [[ -f $f ]] && dd if="$f" iflag=nocache count=0 status=none; done; }
now() { date +%s.%N; }
timed() {  # timed LABEL command...: prints the seconds, keeps the log
  local label=$1; shift
  current=$label  # run() names its --json report after it
  evict "$work/ckpt"
  local t0; t0=$(now)
  "$@" >"$work/$label.log" 2>&1 || { echo "$label failed:" >&2; cat "$work/$label.log" >&2; exit 1; }
  awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }'
}
run() { mpirun -np "$np" "$tool" run --backend "$backend" --json "$work/$current.json" "$@"; }

echo "date: $(date -u +%Y-%m-%dT%H:%MZ); host: $(hostname); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "checkpoint: $bytes bytes, $np ranks x $slots slots x $layers layers, tensors $tensors, backend $backend, workload $workload"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# The disk's own speed, single stream, direct I/O, 1 MiB blocks, next to the checkpoint: what
# the bytes alone predict for each mode (printed at the end).
probe_mib=$(( bytes / 1048576 < 1024 ? bytes / 1048576 : 1024 ))
write_bps=$(dd if=/dev/zero of="$work/probe" bs=1M count="$probe_mib" oflag=direct 2>&1 | awk '/copied/ { printf "%.0f", $1 / $(NF-3) }')
read_bps=$(dd if="$work/probe" of=/dev/null bs=1M iflag=direct 2>&1 | awk '/copied/ { printf "%.0f", $1 / $(NF-3) }')
rm -f "$work/probe"
echo "disk (dd, direct, 1 MiB, single stream, $probe_mib MiB): write $((write_bps / 1000000)) MB/s, read $((read_bps / 1000000)) MB/s"
printf '%-6s %10s %14s %14s %8s\n' round copy_s in_place_s back_s ratio
for r in $(seq "$rounds"); do
  rm -rf "$work/out"
  copy=$(timed "copy-$r" run --old "$work/old.json" --new "$work/new.json" --input "$work/ckpt" --output "$work/out")
  inplace=$(timed "inplace-$r" run --in-place --old "$work/old.json" --new "$work/new.json" --input "$work/ckpt")
  # Same bytes as the copy: every shard and the manifest's placement.
  for f in "$work"/out/rank-*.h5; do cmp -s "$f" "$work/ckpt/$(basename "$f")" || { echo "MISMATCH $f" >&2; exit 1; }; done
  back=$(timed "back-$r" run --in-place --old "$work/new.json" --new "$work/old.json" --input "$work/ckpt")
  echo "$copy $inplace $back" >>"$work/walls.txt"
  printf '%-6s %10.2f %14.2f %14.2f %8.2f\n' "$r" "$copy" "$inplace" "$back" "$(awk -v a="$copy" -v b="$inplace" 'BEGIN { print a / b }')"
done
# The honest price of a recomputed whole-file xxh3 (--check-files: reads every changed shard).
rehash=$(timed rehash run --in-place --check-files --old "$work/old.json" --new "$work/new.json" --input "$work/ckpt")
printf 'in place with --check-files (whole-file xxh3 recomputed): %.2f s\n' "$rehash"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -h "rebalanced\|disk \|time " "$work/copy-1.log" "$work/inplace-1.log" | sed 's/^/  /'
# Where the in-place runs' time went (their reports' in_place.seconds, max over ranks), and
# the runs' own totals against the command's wall time (the rest: mpirun, MPI start-up, exit).
python3 - "$work" "$rounds" "$read_bps" "$write_bps" <<'PY'
import json, sys
work, rounds = sys.argv[1], int(sys.argv[2])
runs = [json.load(open(f"{work}/{k}-{r}.json")) for r in range(1, rounds + 1) for k in ("inplace", "back")]
copies = [json.load(open(f"{work}/copy-{r}.json")) for r in range(1, rounds + 1)]
order = ["take", "load", "plan", "setup", "prefetch", "read", "agree_layer", "exchange",
         "fill_verify", "journal_write", "describe", "journal_commit", "agree_commit", "overwrite",
         "agree_overwrite", "manifest", "journal_remove", "close"]
phases = sorted(runs[0]["in_place"]["seconds"], key=lambda n: order.index(n) if n in order else 99)
print("in-place phases, seconds (max over ranks), per run: " + " ".join(f"{r['seconds']['total']:.2f}" for r in runs))
for name in phases:
    print(f"  {name:<16} " + " ".join(f"{r['in_place']['seconds'][name]:6.3f}" for r in runs))
print("copy runs' own totals: " + " ".join(f"{c['seconds']['total']:.2f}" for c in copies))
# The disk bytes alone, at the dd rates: a copy reads and writes every byte (serial: one after
# the other; overlapped: the slower side alone); in place reads the sources, writes the
# journaled rows twice (journal, then in place) and the copy records' rows once (the
# report's bytes.written counts every overwritten byte once, in_place.bytes_journaled the
# journal's).
rb, wb = float(sys.argv[3]), float(sys.argv[4])
c, i = copies[0]["bytes"], runs[0]["bytes"]
copy_serial = c["read"] / rb + c["written"] / wb
copy_overlap = max(c["read"] / rb, c["written"] / wb)
journaled = runs[0]["in_place"].get("bytes_journaled", i["written"])
in_place = i["read"] / rb + (i["written"] + journaled) / wb
print("rows journaled / copied from a source, per in-place run: " + " ".join(
    f"{r['in_place'].get('rows_journaled', '?')}/{r['in_place'].get('rows_from_source', '?')}" for r in runs))
print(f"disk bytes alone: copy {copy_serial:.2f} s serial, {copy_overlap:.2f} s overlapped; "
      f"in place {in_place:.2f} s; ratio {copy_serial / in_place:.2f} (serial copy), "
      f"{copy_overlap / in_place:.2f} (overlapped copy)")
# The ceiling this machine puts on the end-to-end ratio: the update's disk bytes moved as
# fast as the copy moved its own (reads and writes together, from the copies' own totals),
# plus what each command spends outside the run (mpirun, MPI start-up, exit: wall minus
# the run's own total, the mean over every run), which both modes pay.
walls = [list(map(float, line.split())) for line in open(f"{work}/walls.txt")]
copy_walls = [w[0] for w in walls]
update_walls = [x for w in walls for x in w[1:]]
outside = [w - r["seconds"]["total"] for w, r in zip(update_walls, runs)] + \
          [w - k["seconds"]["total"] for w, k in zip(copy_walls, copies)]
outside_s = sum(outside) / len(outside)
copy_rate = sum(k["bytes"]["read"] + k["bytes"]["written"] for k in copies) / \
            sum(k["seconds"]["total"] for k in copies)
update_bytes = i["read"] + i["written"] + journaled
best_update = update_bytes / copy_rate
mean_copy = sum(copy_walls) / len(copy_walls)
mean_update = sum(update_walls) / len(update_walls)
print(f"ceiling: at the copy's own rate ({copy_rate / 1e9:.2f} GB/s read + written), the update's "
      f"{update_bytes / 1e9:.2f} GB take {best_update:.2f} s; with {outside_s:.2f} s per command "
      f"outside the run, copy / in place would be {mean_copy / (best_update + outside_s):.2f} at best "
      f"end to end (an estimate; measured {mean_copy / mean_update:.2f}, means over the rounds)")
PY
