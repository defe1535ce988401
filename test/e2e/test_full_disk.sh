#!/usr/bin/env bash
# A full disk (docs/RELIABILITY.md, cases D1, D2 and D7): the output on a small tmpfs. Exit 3, the
# root cause first and once per rank ("No space left on device", then the failed call: rows
# are written with pwrite outside HDF5; no HDF5 stack), no staging left, the input unchanged; a re-run elsewhere succeeds. Skipped (77)
# where tmpfs cannot be mounted (not root, or a container without CAP_SYS_ADMIN).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
py=/usr/bin/python3
d="$work"
mkdir -p "$d/small"
mount -t tmpfs -o size=2m tmpfs "$d/small" 2>/dev/null || { echo "cannot mount tmpfs: skipped"; exit 77; }
trap 'umount "$d/small" "$d/ip" 2>/dev/null; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT
python3 "$here/placements.py" random 17 2 3 5 4 "$d"
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "w:fp32:1024x64" --seed 1 --output "$d/in" >/dev/null
in_hash=$(tree_hash "$d/in")
run() { timeout 60 mpirun --oversubscribe -np 2 "$tool" "$@" --old "$d/old.json" --new "$d/new.json" --input "$d/in" --backend mpi; }

expect_exit 3 "$d/full.log" -- run --output "$d/small/out"
expect_in "$d/full.log" "No space left on device"
grep "No space left on device" "$d/full.log" | head -1 | grep -q "writing" && pass || fail "the cause does not say what was being written"
! grep -q "H5FD\|HDF5:" "$d/full.log" && pass || fail "HDF5 stack printed without -v"
(( $(grep -c "No space left on device" "$d/full.log") <= 2 )) && pass || fail "the cause is repeated: $(grep -c 'No space' "$d/full.log") lines"
expect_exit 3 "$d/full-v.log" -- run -v --output "$d/small/out"
# The call that failed: "pwrite", or "direct pwrite" where the filesystem takes O_DIRECT
# (tmpfs does from Linux 6.6) and the aligned body of a tensor hit the limit first.
grep -Eq "No space left on device \((direct )?pwrite of [0-9]+ bytes at byte [0-9]+\)" "$d/full-v.log" \
  && pass || fail "the failed call (pwrite of B bytes at byte X) is not named in full-v.log"
[[ -z "$(ls -A "$d/small")" ]] && pass || fail "leftovers on the full disk: $(ls -A "$d/small")"
[[ "$(tree_hash "$d/in")" == "$in_hash" ]] && pass || fail "input modified"
expect_exit 0 "$d/elsewhere.log" -- run --output "$d/out"

# D7: an update in place whose journal does not fit: the checkpoint's filesystem fills up
# while the journal thread writes. Exit 3 naming the journal, the checkpoint unchanged byte
# for byte, no journal or lock left; with room made, the same command gives the copy's
# bytes. How much the journal takes is measured first, on a copy on the ordinary disk.
out_hash=$(tree_hash "$d/out")
cp -a "$d/in" "$d/probe"
ip_run() { timeout 60 mpirun --oversubscribe -np 2 "$tool" run --in-place --old "$d/old.json" --new "$d/new.json" --backend mpi "$@"; }
expect_exit 0 "$d/probe.log" -- ip_run --input "$d/probe" --json "$d/probe.json"
journaled=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['in_place']['bytes_journaled'])" "$d/probe.json")
(( journaled >= 2 * 262144 )) && pass || fail "D7 needs journaled rows: $journaled bytes journaled"
mkdir -p "$d/ip"
mount -t tmpfs -o size=16m tmpfs "$d/ip"
cp -a "$d/in" "$d/ip/ckpt"
# Leave free half of what the journal needs (tmpfs counts whole pages).
free=$(df -B1 --output=avail "$d/ip" | tail -1)
fallocate -l $((free - journaled / 2)) "$d/ip/filler"
expect_exit 3 "$d/ip-full.log" -- ip_run --input "$d/ip/ckpt"
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
finish
