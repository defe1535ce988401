#!/usr/bin/python3
"""Reads and damages eplb shards with h5py, an HDF5 client independent of lib/io.

  h5py_tool.py dump FILE          root attributes, then every dataset of /layer_00000 as
                                  "data NAME NUMPY_DTYPE SHAPE v0 v1 ..." (integers exactly,
                                  floats as '%.17g')
  h5py_tool.py delete FILE PATH   removes a link
  h5py_tool.py reshape FILE PATH D0xD1...   replaces a dataset by one of that shape
  h5py_tool.py retype FILE PATH NUMPY_DTYPE   replaces a dataset by one of that type
  h5py_tool.py chunk FILE PATH    replaces a dataset by a chunked copy (same values, attributes)
  h5py_tool.py unalign FILE PATH  replaces a dataset by a contiguous copy at a file offset
                                  that is not a multiple of 4 KiB (as files of other tools)
  h5py_tool.py set-attr FILE PATH NAME VALUE   sets a (variable-length) string attribute
  h5py_tool.py set-fixed-attr FILE PATH NAME VALUE   sets a fixed-length string attribute
  h5py_tool.py set-attr-array FILE PATH NAME V1,V2,...   sets an array of strings, variable-
                                  length, or fixed-length when PATH's NAME starts with "fixed:"
"""
import sys

import h5py
import numpy as np


def dump(path):
    with h5py.File(path, "r") as f:
        for name in sorted(f.attrs):
            print("attr", name, f.attrs[name])
        layer = f["layer_00000"]
        for name in layer:
            obj = layer[name]
            if not isinstance(obj, h5py.Dataset):
                continue
            values = obj[...].reshape(-1)
            shape = "x".join(str(d) for d in obj.shape)
            if obj.dtype.kind in "iub":
                shown = (str(int(v)) for v in values)  # exact, even beyond 2^53
            else:
                shown = ("%.17g" % float(v) for v in values)
            print("data", name, obj.dtype.name, shape, *shown)
            if "dtype" in obj.attrs:
                print("dtype-attr", name, obj.attrs["dtype"])


def main(argv):
    op, path = argv[1], argv[2]
    if op == "dump":
        return dump(path)
    with h5py.File(path, "r+") as f:
        if op == "delete":
            del f[argv[3]]
        elif op == "reshape":
            old = f[argv[3]]
            dtype, attrs = old.dtype, dict(old.attrs)
            del f[argv[3]]
            new = f.create_dataset(argv[3], shape=[int(d) for d in argv[4].split("x")],
                                   dtype=dtype)
            for key, value in attrs.items():
                new.attrs[key] = value
        elif op == "retype":
            old = f[argv[3]]
            shape, attrs = old.shape, dict(old.attrs)
            del f[argv[3]]
            new = f.create_dataset(argv[3], shape=shape, dtype=np.dtype(argv[4]))
            for key, value in attrs.items():
                new.attrs[key] = value
        elif op == "chunk":
            old = f[argv[3]]
            data, attrs = old[...], dict(old.attrs)
            del f[argv[3]]
            new = f.create_dataset(argv[3], data=data, chunks=(1,) + data.shape[1:])
            for key, value in attrs.items():
                new.attrs[key] = value
        elif op == "unalign":
            old = f[argv[3]]
            data, attrs = old[...], dict(old.attrs)
            del f[argv[3]]
            f.create_dataset("unalign_pad", data=np.zeros(13, np.uint8))  # shifts what follows
            new = f.create_dataset(argv[3], data=data)
            for key, value in attrs.items():
                new.attrs[key] = value
        elif op == "set-attr":
            f[argv[3]].attrs[argv[4]] = argv[5]
        elif op == "set-fixed-attr":  # a fixed-length string, as numpy.bytes_ writes it
            f[argv[3]].attrs[argv[4]] = np.bytes_(argv[5])
        elif op == "set-attr-array":
            values = argv[5].split(",")
            if argv[4].startswith("fixed:"):
                f[argv[3]].attrs[argv[4][len("fixed:"):]] = np.array(values, dtype=np.bytes_)
            else:
                f[argv[3]].attrs[argv[4]] = values
        else:
            sys.exit("unknown operation " + op)


if __name__ == "__main__":
    main(sys.argv)
