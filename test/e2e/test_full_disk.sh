#!/usr/bin/env bash
# A full disk (docs/RELIABILITY.md, case D1): the output on a small tmpfs. Exit 3, the
# root cause first and once per rank ("No space left on device", then the failed call: rows
# are written with pwrite outside HDF5; no HDF5 stack), no staging left, the input unchanged; a re-run elsewhere succeeds. Skipped (77)
# where tmpfs cannot be mounted (not root, or a container without CAP_SYS_ADMIN).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
d="$work"
mkdir -p "$d/small"
mount -t tmpfs -o size=2m tmpfs "$d/small" 2>/dev/null || { echo "cannot mount tmpfs: skipped"; exit 77; }
trap 'umount "$d/small" 2>/dev/null; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT
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
expect_in "$d/full-v.log" "No space left on device (pwrite of "
[[ -z "$(ls -A "$d/small")" ]] && pass || fail "leftovers on the full disk: $(ls -A "$d/small")"
[[ "$(tree_hash "$d/in")" == "$in_hash" ]] && pass || fail "input modified"
expect_exit 0 "$d/elsewhere.log" -- run --output "$d/out"
finish
