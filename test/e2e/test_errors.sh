#!/usr/bin/env bash
# Bad inputs: each gets a clear message naming the file/layer/slot and rank, the documented
# exit code, no output and no staging left behind, and the input untouched.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tensors="w13:fp8_e4m3:16x8,w2:bf16:8x8"
d="$work"
python3 "$here/placements.py" random 5 4 3 10 3 "$d"
mpi 2 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --seed 3 --output "$d/good" >/dev/null
fresh() { rm -rf "$d/in"; cp -a "$d/good" "$d/in"; }
run4() { mpi 4 "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts --input "$d/in" --output "$d/out" "$@"; }

# 1. Missing shard file: an I/O error (3) on the rank that owns it.
fresh; rm "$d/in/rank-00002.h5"
expect_exit 3 "$d/e1.log" -- run4
expect_in "$d/e1.log" "[rank 2/4"
expect_in "$d/e1.log" "rank-00002.h5"
expect_no_output "$d/out"

# 2. A corrupted slot (one flipped byte, checksum not updated): exit 2, names file, layer, slot.
fresh
/usr/bin/python3 - "$d/in/rank-00001.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    ds = f["layer_00001/w13"]            # fp8: stored as uint8, no conversion
    a = ds[...]
    a.reshape(a.shape[0], -1)[2, 5] ^= 0x10  # row 2 of rank 1 = slot 5
    ds[...] = a
PY
# The whole-file xxh3 catches it first, before anything moves.
before=$(tree_hash "$d/in")
expect_exit 2 "$d/e2w.log" -- run4
expect_in "$d/e2w.log" "'$d/in/rank-00001.h5': whole-file xxh3"
expect_in "$d/e2w.log" "[rank 1/4"
expect_no_output "$d/out"
# With the manifest's entry updated too, the slot's own checksum still catches it.
/usr/bin/python3 - "$d/in" <<'PY'
import sys, json, os, ctypes
d = sys.argv[1]
xxh = ctypes.CDLL("libxxhash.so.0")  # Debian's libxxhash, as the tool uses
xxh.XXH3_64bits.restype = ctypes.c_uint64
xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
data = open(f"{d}/rank-00001.h5", "rb").read()
m = json.load(open(f"{d}/manifest.json"))
f = m["files"][1]
f["size"] = len(data)
f["xxh3"] = "%016x" % xxh.XXH3_64bits(data, len(data))
json.dump(m, open(f"{d}/manifest.json", "w"))
PY
before=$(tree_hash "$d/in")
expect_exit 2 "$d/e2.log" -- run4
expect_in "$d/e2.log" "'$d/in/rank-00001.h5' layer 1, slot 5"
expect_in "$d/e2.log" "checksum mismatch"
expect_in "$d/e2.log" "[rank 1/4"
expect_no_output "$d/out"
[[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "input modified by a failed run"

# 3. Placement and checkpoint disagree: --old is not what the checkpoint holds.
fresh
mkdir -p "$d/other"; python3 "$here/placements.py" random 99 4 3 10 3 "$d/other"
expect_exit 2 "$d/e3.log" -- mpi 4 "$tool" --old "$d/other/old.json" --new "$d/other/new.json" --allow-dropping-experts \
  --input "$d/in" --output "$d/out"
expect_in "$d/e3.log" "does not hold the old placement"
expect_no_output "$d/out"

# 4. Tensor shapes differ between ranks: rank 3's shard comes from another checkpoint.
fresh
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "w13:fp8_e4m3:16x8,w2:bf16:8x4" --output "$d/other-shapes" >/dev/null
cp "$d/other-shapes/rank-00003.h5" "$d/in/rank-00003.h5"
# Its size or (small file) whole-file xxh3 differs from the manifest's: never opened. Which
# one depends on the layout: every object starts on a 4 KiB boundary, so shards of tiny
# tensors can have the same size.
expect_exit 2 "$d/e4s.log" -- run4
expect_in "$d/e4s.log" "'$d/in/rank-00003.h5'"
expect_in "$d/e4s.log" "comes from another checkpoint"
rehash_manifest "$d/in" rank-00003.h5  # the manifest made to agree: the attributes then
expect_exit 2 "$d/e4.log" -- run4
expect_in "$d/e4.log" "[rank 3/4"
expect_in "$d/e4.log" "tensor list"
expect_no_output "$d/out"

# 4b. A same-placement shard of another checkpoint (another seed): its whole-file checksum
#     differs from the manifest's (caught before HDF5 opens it), and so does its identifier
#     (caught when the manifest's entry was made to agree with the file).
fresh
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --seed 4 --output "$d/other-seed" >/dev/null
cp "$d/other-seed/rank-00002.h5" "$d/in/rank-00002.h5"
expect_exit 2 "$d/e4b.log" -- run4
expect_in "$d/e4b.log" "'$d/in/rank-00002.h5': whole-file xxh3"
expect_in "$d/e4b.log" "[rank 2/4"
expect_no_output "$d/out"
expect_exit 5 "$d/e4c.log" -- mpi 2 "$tool" verify --checkpoint "$d/in"
expect_in "$d/e4c.log" "'$d/in/rank-00002.h5': whole-file xxh3"
rehash_manifest "$d/in" rank-00002.h5
expect_exit 2 "$d/e4e.log" -- run4
expect_in "$d/e4e.log" "'$d/in/rank-00002.h5' belongs to checkpoint "
expect_in "$d/e4e.log" "[rank 2/4"
expect_no_output "$d/out"
expect_exit 5 "$d/e4f.log" -- mpi 2 "$tool" verify --checkpoint "$d/in"
expect_in "$d/e4f.log" "belongs to checkpoint"

# 4d. A wrong size in the manifest: refused, also with --check-files.
fresh
sed -i 's/"size":\([0-9]*\)/"size":1\1/' "$d/in/manifest.json"
expect_exit 2 "$d/e4d.log" -- run4 --check-files
expect_in "$d/e4d.log" "bytes, but the manifest says 1"
expect_no_output "$d/out"

# 5. More processes than EP ranks: a usage error (64). (Fewer is fine: a process hosts
#    several EP ranks; test_hosting.sh.)
fresh
expect_exit 64 "$d/e5.log" -- mpi 6 "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts --input "$d/in" --output "$d/out"
expect_in "$d/e5.log" "at most one process per EP rank"
expect_no_output "$d/out"

# 6. Output exists: refused (64) and left alone; --force replaces it once the new one is complete.
fresh; mkdir -p "$d/out"; echo keep > "$d/out/precious"
expect_exit 64 "$d/e6.log" -- run4
expect_in "$d/e6.log" "already exists"
[[ -f "$d/out/precious" ]] && pass || fail "existing output touched"
# --force replaces only an eplb checkpoint: a directory of other files stays, and so does a file.
expect_exit 64 "$d/e6g.log" -- run4 --force
expect_in "$d/e6g.log" "--force replaces only an eplb checkpoint: remove it by hand"
[[ -f "$d/out/precious" ]] && pass || fail "--force replaced a directory that is not a checkpoint"
rm -rf "$d/out"; echo keep > "$d/out"
expect_exit 64 "$d/e6h.log" -- run4 --force
expect_in "$d/e6h.log" "it exists and is a file"
[[ "$(cat "$d/out")" == keep ]] && pass || fail "--force replaced a plain file"
rm -f "$d/out"; cp -a "$d/good" "$d/out"
expect_exit 0 "$d/e6f.log" -- run4 --force
[[ -f "$d/out/manifest.json" ]] && ! cmp -s "$d/out/manifest.json" "$d/good/manifest.json" && pass || fail "--force did not replace the output"
[[ -z "$(ls -A "$d" | grep eplb-)" ]] && pass || fail "leftovers next to the output: $(ls -A "$d")"
rm -rf "$d/out"

# 6b. The output may never replace or sit inside the input, not even with --force.
fresh; before=$(tree_hash "$d/in")
expect_exit 64 "$d/e6b.log" -- mpi 4 "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts --input "$d/in" --output "$d/in" --force
expect_in "$d/e6b.log" "overlap"
expect_exit 64 "$d/e6c.log" -- mpi 4 "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts --input "$d/in" --output "$d/in/sub" --force
[[ "$(tree_hash "$d/in")" == "$before" && ! -e "$d/in/sub" ]] && pass || fail "input touched by an overlapping output"
# ... nor through a symlink, "..", or a bind mount of the input (compared by device and inode).
ln -s "$d/in" "$d/alias"
expect_exit 64 "$d/e6i.log" -- mpi 4 "$tool" --old "$d/old.json" --new "$d/new.json" --input "$d/in" --output "$d/alias" --force
expect_in "$d/e6i.log" "overlap"
expect_exit 64 "$d/e6j.log" -- mpi 4 "$tool" --old "$d/old.json" --new "$d/new.json" --input "$d/alias/../in" --output "$d/in" --force
expect_in "$d/e6j.log" "overlap"
mkdir -p "$d/bind"
if mount --bind "$d/in" "$d/bind" 2>/dev/null; then
  expect_exit 64 "$d/e6k.log" -- mpi 4 "$tool" --old "$d/old.json" --new "$d/new.json" --input "$d/bind" --output "$d/in" --force
  expect_in "$d/e6k.log" "overlap"
  umount "$d/bind"
fi
[[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "input touched through an alias"
rm -f "$d/alias"; rmdir "$d/bind"

# 6d. --backend nccl where no GPU is usable (CI, this machine): a usage error, nothing written.
if ! command -v nvidia-smi >/dev/null 2>&1; then
  fresh
  expect_exit 64 "$d/e6d.log" -- run4 --backend nccl
  expect_in "$d/e6d.log" "--backend nccl needs one GPU per process: NCCL is not built in, or some process sees no CUDA device"
  [[ $(grep -c -- "--backend nccl needs" "$d/e6d.log") -eq 1 ]] && pass || fail "--backend nccl error printed more than once"
  expect_no_output "$d/out"
fi

# 7. Invalid placement JSON: every problem listed with its location, printed once.
printf '{"format": "eplb-placement", "version": 1, "ep_size": 4, "physical_to_logical_map": [[0,1,2,3,4,5,6,7,8,9,0,"x"],[0,1]]}' > "$d/bad.json"
expect_exit 2 "$d/e7.log" -- mpi 4 "$tool" --old "$d/old.json" --new "$d/bad.json" --allow-dropping-experts --input "$d/in" --output "$d/out"
expect_in "$d/e7.log" "/physical_to_logical_map/0/11"
expect_in "$d/e7.log" "/physical_to_logical_map/1"
[[ $(grep -c "physical_to_logical_map/0/11" "$d/e7.log") -eq 1 ]] && pass || fail "problem printed more than once"
expect_no_output "$d/out"

# 8. Input without a manifest (an incomplete checkpoint) is refused.
fresh; rm "$d/in/manifest.json"
expect_exit 2 "$d/e8.log" -- run4
expect_in "$d/e8.log" "manifest.json"
expect_no_output "$d/out"

# 9. verify finds a corrupted output slot and a wrong placement: exit 5.
fresh
mpi 4 "$tool" --old "$d/old.json" --new "$d/new.json" --allow-dropping-experts --input "$d/in" --output "$d/out" >/dev/null
expect_exit 0 "$d/e9a.log" -- mpi 3 "$tool" verify --checkpoint "$d/out" --placement "$d/new.json" --seed 3
expect_exit 5 "$d/e9b.log" -- mpi 2 "$tool" verify --checkpoint "$d/out" --placement "$d/old.json"
/usr/bin/python3 - "$d/out/rank-00000.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    ds = f["layer_00002/w13"]
    a = ds[...]
    a.flat[7] ^= 1
    ds[...] = a
PY
# The whole-file xxh3 tells first (and HDF5 never opens the shard); with the manifest
# made to agree, the slot's own checksum names the slot.
expect_exit 5 "$d/e9m.log" -- mpi 2 "$tool" verify --checkpoint "$d/out"
expect_in "$d/e9m.log" "'$d/out/rank-00000.h5': whole-file xxh3"
rehash_manifest "$d/out" rank-00000.h5
expect_exit 5 "$d/e9c.log" -- mpi 2 "$tool" verify --checkpoint "$d/out"
expect_in "$d/e9c.log" "layer 2, slot 0"
expect_in "$d/e9c.log" "checksum mismatch"
finish
