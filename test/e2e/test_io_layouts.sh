#!/usr/bin/env bash
# Shards whose datasets are not contiguous (chunked and compressed, or compact: written by
# other tools, e.g. h5repack or h5py) are read through HDF5, not pread, with the same
# result: `run` from such a checkpoint gives byte-for-byte the output of the original one,
# and `verify` passes on it. (Contiguous datasets, what this tool writes, are read and
# written with pread/pwrite outside HDF5: docs/FORMAT.md.)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
d="$work"
python3 "$here/placements.py" random 21 2 3 5 3 "$d"
tensors="w13:fp8_e4m3:64x32,w2:bf16:32x32,s:fp32:3"
mpi 2 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --seed 4 --output "$d/in" >/dev/null
cp -a "$d/in" "$d/repacked"
# rank 0: every dataset chunked and gzip-compressed; rank 1: every dataset compact.
h5repack -f GZIP=1 "$d/in/rank-00000.h5" "$d/repacked/rank-00000.h5"
h5repack -l COMPA "$d/in/rank-00001.h5" "$d/repacked/rank-00001.h5"
/usr/bin/python3 - "$d/repacked" <<'PY'
import ctypes, json, os, sys, h5py
d = sys.argv[1]
xxh3 = ctypes.CDLL("libxxhash.so.0").XXH3_64bits
xxh3.restype, xxh3.argtypes = ctypes.c_uint64, [ctypes.c_char_p, ctypes.c_size_t]
layouts = []
for name, want in (("rank-00000.h5", h5py.h5d.CHUNKED), ("rank-00001.h5", h5py.h5d.COMPACT)):
    with h5py.File(f"{d}/{name}", "r") as f:
        got = f["layer_00001/w13"].id.get_create_plist().get_layout()
        assert got == want, f"{name}: layout {got}, expected {want}"
m = json.load(open(f"{d}/manifest.json"))
for entry in m["files"]:
    data = open(f"{d}/{entry['name']}", "rb").read()
    entry["size"] = len(data)
    entry["xxh3"] = "%016x" % xxh3(data, len(data))
json.dump(m, open(f"{d}/manifest.json", "w"))
PY
[[ $? -eq 0 ]] && pass || fail "repacking"
expect_exit 0 "$d/verify.log" -- mpi 2 "$tool" verify --checkpoint "$d/repacked" --placement "$d/old.json" --seed 4
for src in in repacked; do
  expect_exit 0 "$d/run-$src.log" -- mpi 2 "$tool" --old "$d/old.json" --new "$d/new.json" \
    --allow-dropping-experts --input "$d/$src" --output "$d/out-$src" --backend mpi
done
expect_same_checkpoint "$d/out-in" "$d/out-repacked"
expect_exit 0 "$d/verify-out.log" -- mpi 2 "$tool" verify --checkpoint "$d/out-repacked" --placement "$d/new.json" --seed 4
finish
