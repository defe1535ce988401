#!/usr/bin/python3
"""An independent safetensors/HDF5 reader for the Hugging Face e2e tests: only json,
struct, numpy and h5py, nothing of lib/.

  hf_check.py compare BASE OUT           every tensor of every safetensors file of BASE has
                                         the same dtype, shape and bytes in OUT (and the
                                         headers parse equal)
  hf_check.py check-import CKPT HF       every slot of every shard holds exactly the bytes
                                         of its expert in HF (raw HDF5 bytes), empty slots 0
  hf_check.py placement SEED EP SLOTS EXPERTS LAYERS PATH
                                         a placement holding every expert, with replicas
  hf_check.py drop HF TENSOR             rewrites HF without TENSOR (file and index)
  hf_check.py reshape HF TENSOR D0xD1..  rewrites TENSOR with another shape (zero bytes)
  hf_check.py poke HF TENSOR             flips the lowest bit of TENSOR's first byte in place
"""
import json
import os
import random
import struct
import sys

import numpy as np

SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2,
         "I16": 2, "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8,
         "F64": 8}


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return header, 8 + n


def files_of(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return sorted(set(json.load(f)["weight_map"].values()))
    return ["model.safetensors"]


def tensor_bytes(path, header, start, name):
    t = header[name]
    b, e = t["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + b)
        data = f.read(e - b)
    n = SIZES[t["dtype"]]
    for d in t["shape"]:
        n *= d
    assert len(data) == n, (path, name, len(data), n)
    return np.frombuffer(data, dtype=np.uint8)


def compare(base, out):
    bad, count = 0, 0
    for fname in files_of(base):
        hb, sb = read_header(os.path.join(base, fname))
        ho, so = read_header(os.path.join(out, fname))
        if hb != ho:
            print(f"{fname}: headers differ")
            bad += 1
            continue
        for name in hb:
            if name == "__metadata__":
                continue
            a = tensor_bytes(os.path.join(base, fname), hb, sb, name)
            b = tensor_bytes(os.path.join(out, fname), ho, so, name)
            count += 1
            if not np.array_equal(a, b):
                print(f"{fname}: tensor {name}: bytes differ")
                bad += 1
    if files_of(base) != files_of(out):
        print("index lists different files")
        bad += 1
    print(f"compared {count} tensors in {len(files_of(base))} files, {bad} differences")
    return 1 if bad or count == 0 else 0


def expand(template, layer, expert):
    return template.replace("{L}", str(layer)).replace("{E}", str(expert))


def check_import(ckpt, hf):
    import h5py
    with open(os.path.join(ckpt, "manifest.json")) as f:
        m = json.load(f)
    src = m["hugging_face"]
    index = os.path.join(hf, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
    else:
        weight_map = {k: "model.safetensors" for k in read_header(os.path.join(hf, "model.safetensors"))[0]}
    headers = {}
    cache = {}

    def hf_tensor(name):
        if name not in cache:
            path = os.path.join(hf, weight_map[name])
            if path not in headers:
                headers[path] = read_header(path)
            h, s = headers[path]
            cache[name] = tensor_bytes(path, h, s, name)
        return cache[name]

    rows = bad = 0
    for rank, entry in enumerate(m["files"]):
        path = os.path.join(ckpt, entry["name"])
        with h5py.File(path, "r") as f, open(path, "rb") as raw:
            for layer_idx, model_layer in enumerate(src["model_layers"]):
                g = f["layer_%05d" % layer_idx]
                ids = g["logical_ids"][...]
                for t, (spec, ht) in enumerate(zip(m["tensors"], src["tensors"])):
                    ds = g[spec["name"]]
                    raw.seek(ds.id.get_offset())
                    data = np.frombuffer(raw.read(ds.id.get_storage_size()), dtype=np.uint8)
                    data = data.reshape(len(ids), -1)
                    for r, e in enumerate(ids):
                        rows += 1
                        if e < 0:
                            want = np.zeros(data.shape[1], dtype=np.uint8)
                        elif ht["stacked"]:
                            whole = hf_tensor(expand(ht["hf_template"], model_layer, 0))
                            want = whole.reshape(m["placement"]["num_logical_experts"], -1)[e]
                        else:
                            want = hf_tensor(expand(ht["hf_template"], model_layer, e))
                        if not np.array_equal(data[r], want):
                            print(f"{path} layer {layer_idx} row {r} tensor {spec['name']}: "
                                  f"not the bytes of expert {e}")
                            bad += 1
    print(f"checked {rows} slot tensors, {bad} wrong")
    return 1 if bad or rows == 0 else 0


def placement(seed, ep, slots, experts, layers, path):
    rng = random.Random(seed)
    n = ep * slots
    assert n >= experts
    rows = []
    for _ in range(layers):
        ids = list(range(experts)) + [rng.randrange(experts) for _ in range(n - experts)]
        rng.shuffle(ids)
        # An empty slot where there is room: replace one replica (an id seen twice) by -1.
        seen = set()
        for i, x in enumerate(ids):
            if x in seen and rng.random() < 0.5:
                ids[i] = -1
                break
            seen.add(x)
        rows.append(ids)
    with open(path, "w") as f:
        json.dump({"format": "eplb-placement", "version": 1, "ep_size": ep,
                   "num_slots_per_rank": slots, "num_logical_experts": experts,
                   "physical_to_logical_map": rows}, f)
    return 0


def rewrite(hf, name, new_shape):
    """Rewrites the file holding `name` without it (new_shape None) or with a new shape."""
    index_path = os.path.join(hf, "model.safetensors.index.json")
    with open(index_path) as f:
        index = json.load(f)
    fname = index["weight_map"][name]
    path = os.path.join(hf, fname)
    header, start = read_header(path)
    meta = header.pop("__metadata__", None)
    tensors = {}
    for k in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        data = tensor_bytes(path, header, start, k).tobytes()
        dtype, shape = header[k]["dtype"], header[k]["shape"]
        if k == name:
            if new_shape is None:
                continue
            shape = new_shape
            n = SIZES[dtype]
            for d in shape:
                n *= d
            data = bytes(n)
        tensors[k] = (dtype, shape, data)
    out, blobs, at = {}, [], 0
    if meta is not None:
        out["__metadata__"] = meta
    for k, (dtype, shape, data) in tensors.items():
        out[k] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    if new_shape is None:
        del index["weight_map"][name]
        with open(index_path, "w") as f:
            json.dump(index, f, indent=2)
    return 0


def poke(hf, name):
    with open(os.path.join(hf, "model.safetensors.index.json")) as f:
        path = os.path.join(hf, json.load(f)["weight_map"][name])
    header, start = read_header(path)
    at = start + header[name]["data_offsets"][0]
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)[0]
        f.seek(at)
        f.write(bytes([b ^ 1]))
    return 0


def main(argv):
    op = argv[1]
    if op == "compare":
        return compare(argv[2], argv[3])
    if op == "check-import":
        return check_import(argv[2], argv[3])
    if op == "placement":
        return placement(*map(int, argv[2:7]), argv[7])
    if op == "drop":
        return rewrite(argv[2], argv[3], None)
    if op == "reshape":
        return rewrite(argv[2], argv[3], [int(d) for d in argv[4].split("x")])
    if op == "poke":
        return poke(argv[2], argv[3])
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
