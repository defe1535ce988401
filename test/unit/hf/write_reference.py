#!/usr/bin/python3
"""Writes safetensors files the way the safetensors library does, with only json, struct and
numpy (Debian 12 has no safetensors package), for the lib/hf unit tests.

  write_reference.py DIR

DIR/model-00001-of-00002.safetensors and DIR/model-00002-of-00002.safetensors hold one
tensor per dtype (values from numpy), DIR/model.safetensors.index.json indexes them as
transformers' save_pretrained does, and DIR/expected.txt lists "NAME DTYPE SHAPE HEX" per
tensor (HEX = the tensor's bytes, from numpy's tobytes()). The library's layout: tensors
sorted by descending dtype alignment then name, header JSON without spaces with
"__metadata__" first, padded with spaces to a multiple of 8.
"""
import json
import os
import struct
import sys

import numpy as np

# The library's Dtype order (ascending alignment); numpy type used to make the bytes.
DTYPES = [
    ("BOOL", np.bool_), ("U8", np.uint8), ("I8", np.int8), ("F8_E5M2", np.uint8),
    ("F8_E4M3", np.uint8), ("F8_E8M0", np.uint8), ("I16", np.int16), ("U16", np.uint16),
    ("F16", np.float16), ("BF16", np.uint16), ("I32", np.int32), ("U32", np.uint32),
    ("F32", np.float32), ("F64", np.float64), ("I64", np.int64), ("U64", np.uint64),
]
RANK = {name: i for i, (name, _) in enumerate(DTYPES)}


def values(name, np_type, shape):
    n = int(np.prod(shape))
    if np_type is np.bool_:
        return (np.arange(n) % 3 == 0).reshape(shape)
    if np.issubdtype(np_type, np.floating):
        return (np.arange(n, dtype=np.float64) * -0.37 + 1.25).astype(np_type).reshape(shape)
    info = np.iinfo(np_type)
    # Extremes first, so sign and width are exercised.
    base = [info.min, info.max] + list(range(n))
    return np.array(base[:n], dtype=np_type).reshape(shape)


def write_file(path, tensors, metadata):
    tensors = sorted(tensors, key=lambda t: (-RANK[t[1]], t[0]))
    header, data, offset = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, array in tensors:
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    return tensors


def main(out):
    shapes = [(3,), (2, 3), (5,), (1, 4), (4,), (2, 2, 1), (3,), (0, 3)]
    tensors = []
    for i, (dtype, np_type) in enumerate(DTYPES):
        name = "model.layers.%d.mlp.experts.%d.w_%s" % (i % 3, i, dtype.lower())
        tensors.append((name, dtype, values(name, np_type, shapes[i % len(shapes)])))
    tensors.append(("model.norm.scalar", "F32", np.array(2.5, dtype=np.float32)))
    files = {"model-00001-of-00002.safetensors": tensors[:9],
             "model-00002-of-00002.safetensors": tensors[9:]}
    weight_map, total = {}, 0
    with open(os.path.join(out, "expected.txt"), "w") as expected:
        for file_name, group in files.items():
            for name, dtype, array in write_file(os.path.join(out, file_name), group,
                                                 {"format": "pt"}):
                weight_map[name] = file_name
                total += array.nbytes
                shape = "x".join(str(d) for d in array.shape) or "scalar"
                expected.write("%s %s %s %s\n" % (name, dtype, shape, array.tobytes().hex()))
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2,
                  sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
