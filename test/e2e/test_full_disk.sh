#!/usr/bin/env bash
# A full disk (docs/RELIABILITY.md, cases D1, D2, D7 to D11): outputs and journals on small
# tmpfs mounts. Up front (D8 to D10): a job whose bytes do not fit the free space is refused
# with exit 3 before anything is written, naming both figures. Mid-run (D1, D2, D7: the disk
# fills after that check, as another writer or a quota would make it): exit 3, the root cause
# first and once per rank ("No space left on device", then the failed call: rows are written
# with pwrite outside HDF5; no HDF5 stack), nothing left behind, the input unchanged; a re-run
# with room succeeds. Skipped (77) where tmpfs cannot be mounted (not root, or a container
# without CAP_SYS_ADMIN).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
py=/usr/bin/python3
d="$work"
mkdir -p "$d/small" "$d/mid" "$d/ip" "$d/tiny" "$d/few"
mount -t tmpfs -o size=2m tmpfs "$d/small" 2>/dev/null || { echo "cannot mount tmpfs: skipped"; exit 77; }
trap 'umount "$d/small" "$d/mid" "$d/ip" "$d/tiny" "$d/few" 2>/dev/null; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT
mount -t tmpfs -o size=8m tmpfs "$d/mid"
mount -t tmpfs -o size=16m tmpfs "$d/ip"
mount -t tmpfs -o size=64k tmpfs "$d/tiny"
mount -t tmpfs -o size=64m,nr_inodes=4 tmpfs "$d/few"  # room for the bytes, not the files
python3 "$here/placements.py" random 17 2 3 5 4 "$d"
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "w:fp32:1024x64" --seed 1 --output "$d/in" >/dev/null
in_hash=$(tree_hash "$d/in")
run() { timeout 60 mpirun --oversubscribe -np 2 "$tool" "$@" --old "$d/old.json" --new "$d/new.json" --input "$d/in" --backend mpi; }

# stop_then_fill N PATTERN DIR LEFT LOG -- command...: runs the command in the background
# (EPLB_TEST_STOP_AT set by the caller), waits until N of its processes (matched by
# PATTERN) have stopped themselves, fills DIR's filesystem until LEFT bytes are free,
# resumes them and returns the command's exit code. The disk thereby fills after the
# up-front check, as another writer would fill it.
stop_then_fill() {
  local n=$1 pattern=$2 dir=$3 left=$4 log=$5; shift 6
  "$@" >"$log" 2>&1 &
  local launcher=$! pids="" stopped=0
  for _ in $(seq 600); do
    pids=$(pgrep -f -- "$pattern" || true)
    stopped=0
    for p in $pids; do [[ $(ps -o stat= -p "$p" 2>/dev/null) == T* ]] && stopped=$((stopped + 1)); done
    (( stopped >= n )) && break
    sleep 0.05
  done
  (( stopped >= n )) || fail "stop_then_fill: $stopped of $n processes stopped"
  local free; free=$(df -B1 --output=avail "$dir" | tail -1)
  (( free > left )) && fallocate -l $((free - left)) "$dir/filler"
  [[ -n "$pids" ]] && kill -CONT $pids
  local rc=0; wait $launcher || rc=$?
  return $rc
}

# D8: the output cannot hold the new checkpoint (6 MiB of rows on a 2 MiB tmpfs): refused
# before anything is written, naming both figures; nothing left on the small disk.
expect_exit 3 "$d/upfront.log" -- run --output "$d/small/out"
expect_in "$d/upfront.log" "the new checkpoint needs at least 6.00 MiB (6291744 B) on the filesystem of '$d/small', which has"
expect_not_in "$d/upfront.log" "No space left on device"
[[ -z "$(ls -A "$d/small")" ]] && pass || fail "D8: leftovers on the small disk: $(ls -A "$d/small")"
expect_exit 3 "$d/upfront-gen.log" -- mpi 1 "$tool" generate --placement "$d/old.json" --tensors "w:fp32:1024x64" --seed 1 --output "$d/small/gen"
expect_in "$d/upfront-gen.log" "the new checkpoint needs at least"
# The output named with a trailing slash (as in README's example): the same check.
expect_exit 3 "$d/upfront-slash.log" -- run --output "$d/small/out/"
expect_in "$d/upfront-slash.log" "on the filesystem of '$d/small', which has"

# D11: room for the bytes but not for the files (a filesystem out of inodes: 4, of which
# the root, the lock and the staging directory take 3): refused before anything is
# written, naming both counts; nothing left there.
expect_exit 3 "$d/inodes.log" -- run --output "$d/few/out"
expect_in "$d/inodes.log" "the new checkpoint needs at least 4 new files on the filesystem of '$d/few', which lets this user create 1 more (no free inodes): nothing was written; make room or choose another directory"
[[ -z "$(ls -A "$d/few")" ]] && pass || fail "D11: leftovers on the inode-starved disk: $(ls -A "$d/few")"

# D1, D2: the output's disk fills after the check (both processes stop once their shards
# are open; then only 2 MiB are left free).
rc=0
EPLB_TEST_STOP_AT=shard-open stop_then_fill 2 "^$tool --output $d/mid/out " "$d/mid" $((2 << 20)) "$d/full.log" -- run --output "$d/mid/out" || rc=$?
[[ $rc -eq 3 ]] && pass || { fail "D1: exit $rc, expected 3"; sed 's/^/    /' "$d/full.log" >&2; }
expect_in "$d/full.log" "No space left on device"
grep "No space left on device" "$d/full.log" | head -1 | grep -q "writing" && pass || fail "the cause does not say what was being written"
! grep -q "H5FD\|HDF5:" "$d/full.log" && pass || fail "HDF5 stack printed without -v"
(( $(grep -c "No space left on device" "$d/full.log") <= 2 )) && pass || fail "the cause is repeated: $(grep -c 'No space' "$d/full.log") lines"
rm "$d/mid/filler"
rc=0
EPLB_TEST_STOP_AT=shard-open stop_then_fill 2 "^$tool -v --output $d/mid/out " "$d/mid" $((2 << 20)) "$d/full-v.log" -- run -v --output "$d/mid/out" || rc=$?
[[ $rc -eq 3 ]] && pass || { fail "D2: exit $rc, expected 3"; sed 's/^/    /' "$d/full-v.log" >&2; }
# The call that failed: "pwrite", or "direct pwrite" where the filesystem takes O_DIRECT
# (tmpfs does from Linux 6.6) and the aligned body of a tensor hit the limit first.
grep -Eq "No space left on device \((direct )?pwrite of [0-9]+ bytes at byte [0-9]+\)" "$d/full-v.log" \
  && pass || fail "the failed call (pwrite of B bytes at byte X) is not named in full-v.log"
[[ "$(ls -A "$d/mid")" == filler ]] && pass || fail "leftovers on the full disk: $(ls -A "$d/mid")"
[[ "$(tree_hash "$d/in")" == "$in_hash" ]] && pass || fail "input modified"
expect_exit 0 "$d/elsewhere.log" -- run --output "$d/out"

# D9, D7: an update in place whose journal does not fit beside the checkpoint. How much the
# journal takes is measured first, on a copy on the ordinary disk.
out_hash=$(tree_hash "$d/out")
cp -a "$d/in" "$d/probe"
ip_run() { timeout 60 mpirun --oversubscribe -np 2 "$tool" run --in-place --old "$d/old.json" --new "$d/new.json" --backend mpi "$@"; }
expect_exit 0 "$d/probe.log" -- ip_run --input "$d/probe" --json "$d/probe.json"
journaled=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['in_place']['bytes_journaled'])" "$d/probe.json")
(( journaled >= 2 * 262144 )) && pass || fail "D7 needs journaled rows: $journaled bytes journaled"
cp -a "$d/in" "$d/ip/ckpt"
# D9: half of what the journal needs is free (tmpfs counts whole pages): refused up front,
# the checkpoint untouched, no journal or lock left.
free=$(df -B1 --output=avail "$d/ip" | tail -1)
fallocate -l $((free - journaled / 2)) "$d/ip/filler"
expect_exit 3 "$d/ip-upfront.log" -- ip_run --input "$d/ip/ckpt"
expect_in "$d/ip-upfront.log" "the journal of the update in place needs at least"
expect_in "$d/ip-upfront.log" "on the filesystem of '$d/ip/ckpt'"
[[ "$(tree_hash "$d/ip/ckpt")" == "$in_hash" ]] && pass || fail "D9: the checkpoint changed"
[[ ! -e "$d/ip/ckpt/.eplb-journal" ]] && pass || fail "D9: journal left"
[[ ! -e "$d/ip/.ckpt.eplb-lock" ]] && pass || fail "D9: lock left"
rm "$d/ip/filler"
# D7: the checkpoint's filesystem fills up after the check, while the journal thread
# writes (both processes stop once their journals are open; then half of the journal's
# bytes are left free). Exit 3 naming the journal, the checkpoint unchanged byte for byte,
# no journal or lock left; with room made, the same command gives the copy's bytes.
rc=0
EPLB_TEST_STOP_AT=journal-open stop_then_fill 2 "^$tool run --in-place .*--input $d/ip/ckpt" "$d/ip" $((journaled / 2)) "$d/ip-full.log" -- ip_run --input "$d/ip/ckpt" || rc=$?
[[ $rc -eq 3 ]] && pass || { fail "D7: exit $rc, expected 3"; sed 's/^/    /' "$d/ip-full.log" >&2; }
expect_in "$d/ip-full.log" "No space left on device"
grep "No space left on device" "$d/ip-full.log" | head -1 | grep -q ".eplb-journal" && pass || fail "D7: the cause does not name the journal"
[[ "$(tree_hash "$d/ip/ckpt")" == "$in_hash" ]] && pass || fail "D7: the checkpoint changed"
[[ ! -e "$d/ip/ckpt/.eplb-journal" ]] && pass || fail "D7: journal left"
[[ ! -e "$d/ip/.ckpt.eplb-lock" ]] && pass || fail "D7: lock left"
expect_exit 0 "$d/ip-verify.log" -- mpi 2 "$tool" verify --checkpoint "$d/ip/ckpt" --placement "$d/old.json"
rm "$d/ip/filler"
expect_exit 0 "$d/ip-again.log" -- ip_run --input "$d/ip/ckpt"
cmp -s "$d/ip/ckpt/rank-00000.h5" "$d/out/rank-00000.h5" && cmp -s "$d/ip/ckpt/rank-00001.h5" "$d/out/rank-00001.h5" \
  && pass || fail "D7: after room was made, the update differs from the copy"

# D10: `import` and `export` whose output does not fit (a 64 KiB tmpfs, a Qwen3-MoE reference
# checkpoint of 384 KiB): refused up front, exit 3, nothing left there.
"$py" "$here/hf_check.py" placement 1 2 5 8 2 "$d/qwen.json"
hf="$here/../data/hf/qwen3_moe"
expect_exit 3 "$d/imp.log" -- mpi 2 "$tool" import --hf "$hf" --placement "$d/qwen.json" --output "$d/tiny/ck"
expect_in "$d/imp.log" "the new checkpoint needs at least"
expect_in "$d/imp.log" "on the filesystem of '$d/tiny', which has"
expect_exit 0 "$d/imp-ok.log" -- mpi 2 "$tool" import --hf "$hf" --placement "$d/qwen.json" --output "$d/ck"
expect_exit 3 "$d/exp.log" -- mpi 2 "$tool" export --checkpoint "$d/ck" --hf-base "$hf" --output "$d/tiny/hf"
expect_in "$d/exp.log" "the Hugging Face checkpoint needs at least"
[[ -z "$(ls -A "$d/tiny")" ]] && pass || fail "D10: leftovers on the tiny disk: $(ls -A "$d/tiny")"
finish
