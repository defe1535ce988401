#!/usr/bin/env bash
# `run --in-place` (docs/RELIABILITY.md, cases J*): the result equals a copy byte for byte;
# only changed rows are written; usage limits; a rank killed at every phase, on both sides
# of the journal commit, and kill -9 at random moments, each followed by the recovery of
# the next command that opens the checkpoint (verify, run, run --in-place), after which the
# checkpoint is the old one or the new one, complete, and a re-run finishes the update.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
d="$work"
py=/usr/bin/python3
T=90  # seconds: no command may take longer
tensors="w13:fp8_e4m3:64x32,w2:bf16:32x32"  # 4096 bytes per expert
row_bytes=4096

# Placements: old random, new = old with pairs of slots on different ranks swapped (a
# quarter of the slots change, nothing is dropped), one layer left unchanged; and, on each
# EP rank, a slot that takes a logical expert which keeps a stable slot (a copy record,
# rolled forward from there rather than journaled), from the other rank or its own.
python3 "$here/placements.py" random 21 2 4 6 4 "$d"
"$py" - "$d" <<'EOF'
import json, random, sys
d = sys.argv[1]
old = json.load(open(f"{d}/old.json"))
rng = random.Random(7)
new = dict(old)
rows = [list(layer) for layer in old["physical_to_logical_map"]]
for li, layer in enumerate(rows):
    if li == 2: continue  # a layer where nothing moves
    for _ in range(1):
        a, b = rng.randrange(0, 4), rng.randrange(4, 8)
        layer[a], layer[b] = layer[b], layer[a]
    layer[5] = -1 if li == 1 and layer.count(layer[5]) > 1 else layer[5]  # an emptied slot
    for r in (0, 1):
        olds = old["physical_to_logical_map"][li]
        cs = [c for c in range(4 * r, 4 * r + 4) if c not in (a, b, 5) and layer.count(layer[c]) > 1]
        # sources: stable slots, on the other rank in odd layers, on the same one in even
        want = (1 - r) if li % 2 else r
        ss = [s for s in range(4 * want, 4 * want + 4) if s not in (a, b, 5) and layer[s] == olds[s]]
        pairs = [(c, s) for c in cs for s in ss if c != s and layer[s] != layer[c]]
        if pairs:
            c, s = pairs[0]
            layer[c] = layer[s]
new["physical_to_logical_map"] = rows
json.dump(new, open(f"{d}/new.json", "w"))
EOF
mpi 2 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --seed 5 --output "$d/in" >/dev/null
in_hash=$(tree_hash "$d/in")

copy_run() {  # the copy-mode reference
  timeout "$T" mpirun --oversubscribe -np 2 "$tool" run --old "$d/old.json" --new "$d/new.json" \
    --input "$1" --output "$2" --backend mpi --timeout 20 "${@:3}"
}
in_place() {  # in_place CKPT [args...]
  local ckpt=$1; shift
  timeout "$T" mpirun --oversubscribe -np 2 "$tool" run --in-place --old "$d/old.json" \
    --new "$d/new.json" --input "$ckpt" --backend mpi --timeout 20 "$@"
}
verify_new() {  # verify_new CKPT LOG
  timeout "$T" mpirun --oversubscribe -np 2 "$tool" verify --checkpoint "$1" \
    --placement "$d/new.json" --seed 5 >"$2" 2>&1
}

copy_run "$d/in" "$d/ref" >/dev/null 2>&1 && pass || fail "copy-mode reference failed"
ref_hash=$(tree_hash "$d/ref")

# same_as CKPT HASH: shards and manifest byte for byte (tree_hash covers every file).
is_old() { [[ "$(tree_hash "$1")" == "$in_hash" ]]; }
is_new() { [[ "$(tree_hash "$1")" == "$ref_hash" ]]; }
no_leftovers() {  # no journal in it, no lock next to it
  local ckpt=$1 name=$2
  [[ ! -e "$ckpt/.eplb-journal" ]] && pass || fail "$name: journal left in $ckpt"
  [[ ! -e "$(dirname "$ckpt")/.$(basename "$ckpt").eplb-lock" ]] && pass || fail "$name: lock left"
}

# J1: in place equals the copy, byte for byte (shards and manifest), and verifies.
cp -a "$d/in" "$d/ip"; chmod 640 "$d/ip/manifest.json"
in_place "$d/ip" --json "$d/ip.json" >"$d/ip.log" 2>&1 && pass || { fail "in-place run failed"; cat "$d/ip.log" >&2; }
is_new "$d/ip" && pass || fail "J1: in-place result differs from the copy-mode output"
for f in "$d"/ref/rank-*.h5; do
  cmp -s "$f" "$d/ip/$(basename "$f")" && pass || fail "J1: $(basename "$f") differs from the copy's"
done
cmp -s "$d/ref/manifest.json" "$d/ip/manifest.json" && pass || fail "J1: manifest differs"
verify_new "$d/ip" "$d/ip.verify.log" && pass || { fail "J1: verify failed"; cat "$d/ip.verify.log" >&2; }
no_leftovers "$d/ip" J1
[[ $(stat -c %a "$d/ip/manifest.json") == 640 ]] && pass || fail "J1: the manifest's mode changed"

# J2: only the changed rows are read and written (counted from the placements).
"$py" - "$d" "$row_bytes" <<'EOF' && pass || fail "J2: bytes read or written do not match the changed rows"
import json, sys
d, row = sys.argv[1], int(sys.argv[2])
old = json.load(open(f"{d}/old.json"))["physical_to_logical_map"]
new = json.load(open(f"{d}/new.json"))["physical_to_logical_map"]
r = json.load(open(f"{d}/ip.json"))
L, ep = 4, 2
changed = sum(o != n for lo, ln in zip(old, new) for o, n in zip(lo, ln))
# per rank and layer with a change: both checksum arrays (L uint64 each), the logical ids
# (L int32); per shard the 32-byte checkpoint id.
meta = 0
for lo, ln in zip(old, new):
    for rank in range(ep):
        if lo[rank*L:(rank+1)*L] != ln[rank*L:(rank+1)*L]:
            meta += 2 * L * 8 + L * 4
meta += 32 * ep
written, read = r["bytes"]["written"], r["bytes"]["read"]
print(f"changed rows {changed}, written {written}, expected {changed*row + meta}, read {read}")
assert written == changed * row + meta, (written, changed * row + meta)
assert 0 < read <= changed * row, (read, changed * row)
# Rows whose new logical expert keeps a stable slot are copy records from it; of the rest,
# those that copy the old bytes of a journaled row (wave 1, before it is overwritten) too:
# at least one of each swap pair.
stable = lambda lo, ln, e: any(o == n == e for o, n in zip(lo, ln))
from_stable = sum(o != n and n >= 0 and stable(lo, ln, n)
                  for lo, ln in zip(old, new) for o, n in zip(lo, ln))
ip = r["in_place"]
copies, from_journaled = ip["rows_from_source"], ip["rows_from_journaled_row"]
print(f"rows journaled {ip['rows_journaled']}, from a source {copies} (from a stable slot "
      f"{copies - from_journaled}, expected {from_stable}; from a journaled row {from_journaled}), "
      f"bytes journaled {ip['bytes_journaled']}")
assert from_stable >= 4, from_stable  # the test's placements must exercise copy records
assert copies - from_journaled == from_stable
assert from_journaled >= 1  # the swaps without a stable holder: one of each pair
assert ip["rows_journaled"] + copies == changed
assert ip["bytes_journaled"] == written - copies * row
EOF

# The -v log says how the changed rows went: journaled or rolled forward from a source.
rm -rf "$d/k"; cp -a "$d/in" "$d/k"
in_place "$d/k" -v >"$d/ipv.log" 2>&1 && pass || fail "J2: in-place -v failed"
expect_in "$d/ipv.log" "journaled, $("$py" -c "import json; print(json.load(open('$d/ip.json'))['in_place']['rows_from_source'])") rolled forward from a source"
is_new "$d/k" && pass || fail "J2: in-place -v result differs from the copy-mode output"

# J3: usage limits (exit 64, checkpoint untouched).
mkdir -p "$d/p3"; python3 "$here/placements.py" random 21 2 4 6 4 "$d/p3" 3
cp -a "$d/in" "$d/u"
expect_exit 64 "$d/u1.log" -- timeout "$T" mpirun --oversubscribe -np 2 "$tool" run --in-place \
  --old "$d/old.json" --new "$d/p3/new.json" --input "$d/u" --backend mpi
expect_in "$d/u1.log" "must have the same ep_size and slots per rank (old 2 x 4, new 3 x 4)"
expect_exit 64 "$d/u2.log" -- "$tool" run --in-place --old "$d/old.json" --new "$d/new.json" --input "$d/u" --output "$d/x"
expect_in "$d/u2.log" "--output excludes --in-place"
expect_exit 64 "$d/u3.log" -- "$tool" run --old "$d/old.json" --new "$d/new.json" --input "$d/u"
expect_in "$d/u3.log" "--output is required (or --in-place to update --input itself)"
expect_exit 64 "$d/u4.log" -- "$tool" run --in-place --roofline --old "$d/old.json" --new "$d/new.json" --input "$d/u"
expect_in "$d/u4.log" "--roofline measures copy mode's storage pattern; it cannot be combined with --in-place"
is_old "$d/u" && pass || fail "J3: checkpoint modified by a refused run"
no_leftovers "$d/u" J3

# J4-J18: a rank killed at each phase. Before the journals are committed the checkpoint
# must come back as the old one (rolled back); after, as the new one (rolled forward).
# "journal-written" is either: its own journal is committed, the others' may be too.
# "copying" (between two rows rolled forward from memory: copy records), "copied" (all of
# this rank's written, not yet fsynced), "wave-1" (fsynced, before the ranks agree) and
# "wave-2" (agreed, the journaled rows not yet written) are after it: recovery copies what
# is missing from the sources (stable slots, or journaled rows not yet overwritten).
# "renaming-manifest.json": rank 0 dies with the new manifest written to its temporary file,
# not yet renamed; recovery must not leave that file behind (the tree hash counts it).
declare -A side=([journal-open]=old [in-place-layer-0]=old [in-place-layer-3]=old
  [journal-written]=either [journal-committed]=new [copying]=new [copied]=new [wave-1]=new
  [wave-2]=new [overwriting]=new [applied]=new [renaming-manifest.json]=new
  [in-place-manifest]=new)
recoverers=(verify run in-place)
i=0
for phase in journal-open in-place-layer-0 in-place-layer-3 journal-written journal-committed copying copied wave-1 wave-2 overwriting applied renaming-manifest.json in-place-manifest; do
  for rank in 0 1; do
    [[ $phase == *manifest* && $rank == 1 ]] && continue  # rank 0 writes it
    name="kill-$phase-$rank"
    rm -rf "$d/k" "$d/k2" "$d"/.k.eplb-*; cp -a "$d/in" "$d/k"
    rc=0; EPLB_TEST_KILL_AT="$phase:$rank" in_place "$d/k" >"$d/$name.log" 2>&1 || rc=$?
    [[ $rc -ne 0 ]] && pass || fail "$name: exit 0"
    expect_in "$d/$name.log" "EPLB_TEST_KILL_AT: killed at $phase"
    # Rank 0, told by mpirun to stop (SIGTERM) before the journals are committed, removes
    # the journal itself; after, or when rank 0 is the one killed, the journal stays.
    journal_left=no; [[ -d "$d/k/.eplb-journal" ]] && journal_left=yes
    case $phase in journal-committed|copying|copied|wave-1|wave-2|overwriting|applied|*manifest*)
      [[ $journal_left == yes ]] && pass || fail "$name: the committed journal is gone" ;; esac
    # The next command that opens it finishes the update; take turns.
    how=${recoverers[$((i % 3))]}; i=$((i + 1))
    case $how in
      verify) timeout "$T" mpirun --oversubscribe -np 2 "$tool" verify --checkpoint "$d/k" >"$d/$name.rec.log" 2>&1 || true ;;
      run) copy_run "$d/k" "$d/k2" >"$d/$name.rec.log" 2>&1 || true ;;
      in-place) in_place "$d/k" >"$d/$name.rec.log" 2>&1 || true ;;
    esac
    want=${side[$phase]}
    if [[ $how == in-place ]]; then
      # Recovery, then the update itself: exit 0 either way, and the checkpoint is new.
      if grep -q "finished an interrupted in-place update" "$d/$name.rec.log"; then
        expect_in "$d/$name.rec.log" "already gave '$d/k' the new placement: nothing left to do"
      fi
      grep -q "rebalanced" "$d/$name.rec.log" && pass || fail "$name: the in-place re-run failed"
    elif [[ $want != new ]] && is_old "$d/k"; then
      pass; [[ $journal_left == no ]] || expect_in "$d/$name.rec.log" "rolled back an interrupted in-place update"
    elif [[ $want != old ]] && is_new "$d/k"; then
      pass; expect_in "$d/$name.rec.log" "finished an interrupted in-place update"
    else
      fail "$name: after recovery by $how the checkpoint is neither the expected old nor new ($want)"
      sed 's/^/    /' "$d/$name.rec.log" >&2
    fi
    if is_old "$d/k"; then in_place "$d/k" >"$d/$name.rerun.log" 2>&1 && pass || fail "$name: re-run failed"; fi
    is_new "$d/k" && pass || { fail "$name: not the new checkpoint after recovery and re-run"; sed 's/^/    /' "$d/$name.rec.log" >&2; }
    verify_new "$d/k" "$d/$name.verify.log" && pass || fail "$name: verify failed"
    no_leftovers "$d/k" "$name"
    echo "case $name: journal left: $journal_left, recovered by $how"
  done
done

# J19: a kill during the roll-forward itself: the next command finishes it.
rm -rf "$d/k"; cp -a "$d/in" "$d/k"
EPLB_TEST_KILL_AT="applied:0" in_place "$d/k" >/dev/null 2>&1 || true
rc=0; EPLB_TEST_KILL_AT="recovery-rank-00000.h5" timeout "$T" "$tool" verify --checkpoint "$d/k" >"$d/j20a.log" 2>&1 || rc=$?
[[ $rc -ne 0 && -d "$d/k/.eplb-journal" ]] && pass || fail "J19: the recovery was not interrupted"
verify_new "$d/k" "$d/j20b.log" && pass || { fail "J19: second recovery failed"; cat "$d/j20b.log" >&2; }
expect_in "$d/j20b.log" "finished an interrupted in-place update"
is_new "$d/k" && pass || fail "J19: not the new checkpoint"

# J19b: a kill between two copies of the roll-forward, and between its copies (all
# journals') and its patches (rank 0's copy rows not yet written, as rank 0 died right
# after the journals were agreed on): the next command finishes from the sources.
for rk in recovery-copying recovery-copied; do
  rm -rf "$d/k"; cp -a "$d/in" "$d/k"
  EPLB_TEST_KILL_AT="journal-committed:0" in_place "$d/k" >/dev/null 2>&1 || true
  rc=0; EPLB_TEST_KILL_AT="$rk" timeout "$T" "$tool" verify --checkpoint "$d/k" >"$d/j19c.log" 2>&1 || rc=$?
  [[ $rc -ne 0 && -d "$d/k/.eplb-journal" ]] && pass || fail "J19b: the recovery was not interrupted at $rk"
  expect_in "$d/j19c.log" "EPLB_TEST_KILL_AT: killed at $rk"
  verify_new "$d/k" "$d/j19d.log" && pass || { fail "J19b ($rk): second recovery failed"; cat "$d/j19d.log" >&2; }
  expect_in "$d/j19d.log" "finished an interrupted in-place update"
  is_new "$d/k" && pass || fail "J19b ($rk): not the new checkpoint"
  for f in "$d"/ref/rank-*.h5; do
    cmp -s "$f" "$d/k/$(basename "$f")" && pass || fail "J19b ($rk): $(basename "$f") differs from the copy's"
  done
done

# J19c: a stable slot damaged while a committed journal copies from it: recovery refuses
# (exit 2, naming the files), writes nothing more and keeps the journal.
rm -rf "$d/k"; cp -a "$d/in" "$d/k"
EPLB_TEST_KILL_AT="journal-committed:0" in_place "$d/k" >/dev/null 2>&1 || true
src=$("$py" - "$d/k/.eplb-journal/rank-00000" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
name_len = struct.unpack_from("<I", b, 20)[0]
pos = 32 + name_len
while True:
    kind, _, off, length = struct.unpack_from("<IIQQ", b, pos)
    if kind == 4:
        n, src_off, _, nl = struct.unpack_from("<QQQI", b, pos + 24)
        print(b[pos + 24 + 32: pos + 24 + 32 + nl].decode(), src_off); break
    pos += 24 + length
EOF
)
read -r src_name src_off <<<"$src"
"$py" -c "import sys; f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); c = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([c[0] ^ 1]))" "$d/k/$src_name" "$src_off"
expect_exit 2 "$d/j19e.log" -- timeout "$T" "$tool" verify --checkpoint "$d/k"
expect_in "$d/j19e.log" "of '$d/k/$src_name', to be copied to"
[[ -d "$d/k/.eplb-journal" ]] && pass || fail "J19c: the journal is gone after a refused recovery"

# J20: a live update holds the checkpoint: a second update and a reader are refused (64)
# naming it, and the first completes.
rm -rf "$d/k"; cp -a "$d/in" "$d/k"
# Rank 0 stops itself (SIGSTOP) once its journal is open, holding the lock: a live update at
# a known moment, whatever the machine's speed.
EPLB_TEST_KILL_AT= EPLB_TEST_STOP_AT="journal-open:0" in_place "$d/k" >"$d/j21.log" 2>&1 &
launcher=$!
pids=""
for _ in $(seq 600); do
  pids=$(pgrep -f -- "^$tool run --in-place .*--input $d/k " || true)
  for p in $pids; do [[ $(ps -o stat= -p "$p" 2>/dev/null) == T* ]] && break 2; done
  sleep 0.05
done
[[ -d "$d/k/.eplb-journal" ]] && pass || fail "J20: the first update did not stop with its journal open"
expect_exit 64 "$d/j21b.log" -- in_place "$d/k"
expect_in "$d/j21b.log" "is being written by another run"
expect_exit 64 "$d/j21c.log" -- timeout "$T" "$tool" verify --checkpoint "$d/k"
expect_in "$d/j21c.log" "is being updated in place by another run"
if [[ -n "$pids" ]]; then kill -CONT $pids; fi
wait $launcher && pass || { fail "J20: the first update failed"; cat "$d/j21.log" >&2; }
is_new "$d/k" && pass || fail "J20: not the new checkpoint"

# J21: a symlink planted at the journal's name: refused, its target untouched.
rm -rf "$d/k"; cp -a "$d/in" "$d/k"; mkdir "$d/target"; ln -s "$d/target" "$d/k/.eplb-journal"
expect_exit 3 "$d/j22.log" -- in_place "$d/k"
expect_in "$d/j22.log" "is not a directory: remove it by hand"
[[ -z "$(ls -A "$d/target")" ]] && pass || fail "J21: wrote through the planted symlink"

# J30: a source row of a late layer is corrupt. The reader thread reads it ahead of the
# exchange; the run stops with exit 2 naming it, and the checkpoint is left as it was.
rm -rf "$d/c"; cp -a "$d/in" "$d/c"
"$py" - "$d" "$d/c/rank-00001.h5" <<'EOF2'
import json, sys, h5py
d, shard = sys.argv[1], sys.argv[2]
olds = json.load(open(f"{d}/old.json"))["physical_to_logical_map"]
news = json.load(open(f"{d}/new.json"))["physical_to_logical_map"]
# The last layer with a slot of rank 1 whose expert must be sent to rank 0 (rank 0 gets it
# and has no copy of its own): a row the run has to read.
for layer in reversed(range(len(olds))):
    old, new = olds[layer], news[layer]
    rows = [s - 4 for s in range(4, 8)
            if any(new[t] == old[s] != old[t] for t in range(4)) and old[s] not in old[:4]]
    if rows: break
row = rows[0]
with h5py.File(shard, "r") as f:
    at = f[f"layer_{layer:05d}/w13"].id.get_offset() + row * 2048 + 100
with open(shard, "r+b") as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x20]))
print(f"layer {layer}, slot {4 + row} (logical expert {old[4 + row]})", file=open(f"{d}/c.slot", "w"))
EOF2
rehash_manifest "$d/c" rank-00001.h5  # so that the row's own checksum is what catches it
c_before=$(tree_hash "$d/c")
expect_exit 2 "$d/c.log" -- in_place "$d/c"
expect_in "$d/c.log" "rank-00001.h5' $(cat "$d/c.slot"), tensor 'w13': checksum mismatch"
[[ "$(tree_hash "$d/c")" == "$c_before" ]] && pass || fail "J30: the checkpoint changed"
no_leftovers "$d/c" J30

# J22-J29: kill -9 of a random rank at a random moment (seeded), on a checkpoint large
# enough for the run to last a while; then verify recovers and the result is old or new.
mkdir -p "$d/big"; python3 "$here/placements.py" random 31 2 8 12 8 "$d/big"
"$py" - "$d/big" <<'EOF'
import json, random, sys
d = sys.argv[1]
old = json.load(open(f"{d}/old.json")); rng = random.Random(3)
rows = [list(l) for l in old["physical_to_logical_map"]]
for li, l in enumerate(rows):
    for _ in range(2):
        a, b = rng.randrange(0, 8), rng.randrange(8, 16); l[a], l[b] = l[b], l[a]
    # and slots that take a logical expert keeping a stable slot (copy records)
    o = old["physical_to_logical_map"][li]
    for r in (0, 1):
        cs = [c for c in range(8 * r, 8 * r + 8) if l[c] == o[c] and l.count(l[c]) > 1]
        ss = [s for s in range(16) if l[s] == o[s] and s not in cs[:1]]
        pairs = [(c, s) for c in cs[:1] for s in ss if l[s] != l[c]]
        if pairs:
            c, s = pairs[rng.randrange(len(pairs))]
            l[c] = l[s]
new = dict(old); new["physical_to_logical_map"] = rows; json.dump(new, open(f"{d}/new.json", "w"))
EOF
big_tensors="w13:bf16:256x512,w2:bf16:512x256"
mpi 2 "$tool" generate --placement "$d/big/old.json" --tensors "$big_tensors" --seed 8 --output "$d/big/in" >/dev/null
big_old=$(tree_hash "$d/big/in")
timeout "$T" mpirun --oversubscribe -np 2 "$tool" run --old "$d/big/old.json" --new "$d/big/new.json" \
  --input "$d/big/in" --output "$d/big/ref" --backend mpi >/dev/null 2>&1
big_new=$(tree_hash "$d/big/ref")

# J31: the source rows of up to 3 layers are read ahead, and the journal entries of up to 3
# written behind, within --max-staging-bytes, and of one layer when the budget holds no more
# (4 MiB of old rows per layer here); the result is the copy's either way.
layers_ahead() { "$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['pipeline']['layers_read_ahead'])" "$1"; }
layers_behind() { "$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['pipeline']['layers_written_behind'])" "$1"; }
for budget in 2GiB 1MiB; do
  rm -rf "$d/big/s"; cp -a "$d/big/in" "$d/big/s"
  timeout "$T" mpirun --oversubscribe -np 2 "$tool" run --in-place --old "$d/big/old.json" \
    --new "$d/big/new.json" --input "$d/big/s" --backend mpi --max-staging-bytes $budget \
    --json "$d/big/s.json" >"$d/big/s.log" 2>&1 && pass || { fail "J31 ($budget): run failed"; cat "$d/big/s.log" >&2; }
  [[ "$(tree_hash "$d/big/s")" == "$big_new" ]] && pass || fail "J31 ($budget): result differs from the copy"
  want=$([[ $budget == 2GiB ]] && echo 3 || echo 1)
  [[ "$(layers_ahead "$d/big/s.json")" == "$want" ]] && pass || fail "J31 ($budget): $(layers_ahead "$d/big/s.json") layers read ahead, expected $want"
  [[ "$(layers_behind "$d/big/s.json")" == "$want" ]] && pass || fail "J31 ($budget): $(layers_behind "$d/big/s.json") layers journaled behind, expected $want"
done
# The random kills below are drawn within the ranks' lifetime, measured here on an
# uninterrupted run the way the kills see it: from both ranks' appearance to the last one's
# exit (MPI_Init and finalisation included), so that few land after the run has ended.
rank_pattern() { echo "^$tool run --in-place .*--input $1 "; }
rm -rf "$d/big/k"; cp -a "$d/big/in" "$d/big/k"
timeout -k 10 "$T" mpirun --oversubscribe -np 2 "$tool" run --in-place --old "$d/big/old.json" \
  --new "$d/big/new.json" --input "$d/big/k" --backend mpi >"$d/big/life.log" 2>&1 &
launcher=$!
for _ in $(seq 400); do
  (( $(pgrep -fc -- "$(rank_pattern "$d/big/k")" || true) >= 2 )) && break; sleep 0.01
done
t0=$(date +%s%N)
while pgrep -f -- "$(rank_pattern "$d/big/k")" >/dev/null; do sleep 0.005; done
span_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait_launcher "$launcher" "$(rank_pattern "$d/big/k")"
(( span_ms >= 20 )) || span_ms=20
echo "random kills: delays drawn from 0-${span_ms} ms (the ranks' lifetime in an uninterrupted run)"
landed=0
RANDOM=${EPLB_FAULT_SEED:-12345}
for n in 1 2 3 4 5 6 7 8; do
  rm -rf "$d/big/k"; cp -a "$d/big/in" "$d/big/k"
  delay_ms=$((RANDOM % span_ms)); victim=$((RANDOM % 2))
  timeout -k 10 "$T" mpirun --oversubscribe -np 2 "$tool" run --in-place --old "$d/big/old.json" \
    --new "$d/big/new.json" --input "$d/big/k" --backend mpi --timeout 20 >"$d/big/r$n.log" 2>&1 &
  launcher=$!
  # Once both ranks run, wait the random delay, then kill one of them.
  pids=()
  for _ in $(seq 1000); do
    pids=($(pgrep -f -- "$(rank_pattern "$d/big/k")" || true))
    [[ ${#pids[@]} -ge 2 ]] && break; sleep 0.01
  done
  sleep "$(printf '0.%03d' $((delay_ms % 1000)))"; sleep $((delay_ms / 1000))
  killed=no
  [[ ${#pids[@]} -gt $victim ]] && kill -9 "${pids[$victim]}" 2>/dev/null && killed=yes
  [[ $killed == yes ]] && landed=$((landed + 1))
  wait_launcher "$launcher" "^$tool run --in-place .*--input $d/big/k "
  timeout "$T" "$tool" verify --checkpoint "$d/big/k" >"$d/big/v$n.log" 2>&1 || true
  h=$(tree_hash "$d/big/k")
  if [[ $h == "$big_old" || $h == "$big_new" ]]; then pass
  else fail "random kill $n (after ${delay_ms} ms, rank $victim): neither old nor new"; sed 's/^/    /' "$d/big/v$n.log" >&2; fi
  [[ ! -e "$d/big/k/.eplb-journal" ]] && pass || fail "random kill $n: journal left after verify"
  echo "random kill $n: after ${delay_ms} ms, rank $victim (killed: $killed): $([[ $h == "$big_new" ]] && echo new || echo old); $(grep -ho 'rolled back\|finished an interrupted' "$d/big/v$n.log" || echo 'no journal')"
done
# A kill that lands after the run has ended tests nothing: at least one must land.
echo "random kills: $landed of 8 landed while the ranks ran"
((landed >= 1)) && pass || fail "no random kill landed while the ranks ran (lifetime ${span_ms} ms)"

# J32: rows that could be copy records but whose bytes would not fit in --max-staging-bytes
# (8 MiB of layer buffers per process here, so 1 MiB, two rows, left) are journaled
# instead, and -v says so; the result is the same, byte for byte.
rm -rf "$d/big/k"; cp -a "$d/big/in" "$d/big/k"
timeout "$T" mpirun --oversubscribe -np 2 "$tool" run --in-place --old "$d/big/old.json" \
  --new "$d/big/new.json" --input "$d/big/k" --backend mpi --timeout 20 -v \
  --max-staging-bytes 9MiB --json "$d/big/b.json" >"$d/big/b.log" 2>&1 && pass || { fail "J32: run failed"; cat "$d/big/b.log" >&2; }
expect_in "$d/big/b.log" "could have been copy records were journaled: keeping their bytes in memory would exceed --max-staging-bytes"
"$py" - "$d/big" <<'EOF' && pass || fail "J32: rows journaled or copied do not add up"
import json, sys
d = sys.argv[1]
old = json.load(open(f"{d}/old.json"))["physical_to_logical_map"]
new = json.load(open(f"{d}/new.json"))["physical_to_logical_map"]
ip = json.load(open(f"{d}/b.json"))["in_place"]
changed = sum(o != n for lo, ln in zip(old, new) for o, n in zip(lo, ln))
stable = lambda lo, ln, e: any(o == n == e for o, n in zip(lo, ln))
could = sum(o != n and n >= 0 and stable(lo, ln, n) for lo, ln in zip(old, new) for o, n in zip(lo, ln))
print(f"changed {changed}, could be copies {could}, journaled {ip['rows_journaled']}, copies {ip['rows_from_source']}")
assert could > 4, could
assert 0 < ip["rows_from_source"] <= 4, ip
assert ip["rows_journaled"] + ip["rows_from_source"] == changed, ip
EOF
[[ $(tree_hash "$d/big/k") == "$big_new" ]] && pass || fail "J32: the result differs from the copy-mode output"
for f in "$d"/big/ref/rank-*.h5; do
  cmp -s "$f" "$d/big/k/$(basename "$f")" && pass || fail "J32: $(basename "$f") differs from the copy's"
done

# J33: several EP ranks per process (4 EP ranks on 2 processes), a new placement with swaps,
# a 3-cycle and replicas per layer: the result equals the copy byte for byte, and a kill at
# each wave boundary is rolled forward to it by verify.
mkdir -p "$d/multi"; python3 "$here/placements.py" random 31 4 8 24 6 "$d/multi" >/dev/null
"$py" - "$d/multi" <<'PY'
import json, random, sys
d = sys.argv[1]
old = json.load(open(f"{d}/old.json")); rng = random.Random(5)
rows = [list(l) for l in old["physical_to_logical_map"]]
n = len(rows[0])
for li, l in enumerate(rows):
    o = old["physical_to_logical_map"][li]
    for _ in range(3):  # swaps across EP ranks
        a, b = rng.randrange(0, n), rng.randrange(0, n)
        if a // 8 != b // 8 and l[a] == o[a] and l[b] == o[b]: l[a], l[b] = l[b], l[a]
    a, b, c = rng.sample(range(n), 3)  # a 3-cycle
    if all(l[x] == o[x] for x in (a, b, c)): l[a], l[b], l[c] = o[b], o[c], o[a]
    for _ in range(2):  # replicas of a stable slot
        c, s = rng.sample(range(n), 2)
        if l[c] == o[c] and l[s] == o[s] and l.count(l[c]) > 1: l[c] = l[s]
new = dict(old); new["physical_to_logical_map"] = rows; json.dump(new, open(f"{d}/new.json", "w"))
PY
mpi 2 "$tool" generate --placement "$d/multi/old.json" --tensors "w13:bf16:64x64,w2:bf16:64x64" --seed 3 --output "$d/multi/in" >/dev/null
timeout "$T" mpirun --oversubscribe -np 2 "$tool" run --old "$d/multi/old.json" --new "$d/multi/new.json" \
  --input "$d/multi/in" --output "$d/multi/ref" --backend mpi >/dev/null 2>&1 || fail "J33: copy failed"
multi_new=$(tree_hash "$d/multi/ref")
for ph in none copying:0 copied:1 wave-1:0 wave-2:1 overwriting:0; do
  rm -rf "$d/multi/k"; cp -a "$d/multi/in" "$d/multi/k"
  rc=0; EPLB_TEST_KILL_AT=${ph/none/} timeout "$T" mpirun --oversubscribe -np 2 "$tool" run --in-place \
    --old "$d/multi/old.json" --new "$d/multi/new.json" --input "$d/multi/k" --backend mpi --timeout 20 \
    --json "$d/multi/k.json" >"$d/multi/k.log" 2>&1 || rc=$?
  if [[ $ph == none ]]; then
    [[ $rc -eq 0 ]] && pass || fail "J33: in place failed"
    "$py" -c "import json; ip = json.load(open('$d/multi/k.json'))['in_place']; print('J33 rows', {k: v for k, v in ip.items() if k != 'seconds'}); assert ip['rows_from_journaled_row'] > 0 and ip['rows_from_source'] > ip['rows_from_journaled_row'] and ip['rows_journaled'] > 0" && pass || fail "J33: rows journaled or copied"
  else
    expect_in "$d/multi/k.log" "EPLB_TEST_KILL_AT: killed at ${ph%:*}"
    timeout "$T" mpirun --oversubscribe -np 2 "$tool" verify --checkpoint "$d/multi/k" \
      --placement "$d/multi/new.json" --seed 3 >"$d/multi/v.log" 2>&1 && pass || fail "J33 ($ph): verify failed"
    expect_in "$d/multi/v.log" "finished an interrupted in-place update"
  fi
  [[ $(tree_hash "$d/multi/k") == "$multi_new" ]] && pass || fail "J33 ($ph): not the copy's bytes"
  for f in "$d"/multi/ref/rank-*.h5; do
    cmp -s "$f" "$d/multi/k/$(basename "$f")" && pass || fail "J33 ($ph): $(basename "$f") differs from the copy's"
  done
done

finish
