"""Golden values for tests/io/npy_test.cpp, written by NumPy at test time.

Usage: /usr/bin/python3 make_npy_golden.py OUTDIR

Writes .npy files in every supported dtype, both byte orders, C and Fortran order and format
versions 1.0, 2.0 and 3.0, and beside each the array's elements as raw little-endian bytes
in C order (what medseg's tensor holds). OUTDIR/manifest.json lists
{"path", "raw", "shape", "dtype"} per file. It also reads OUTDIR/from_medseg/*.npy when the
test asks (argument --check FILE SHAPE DTYPE) to confirm NumPy reads what medseg wrote.
"""
import json
import os
import sys

import numpy as np


def main():
    if sys.argv[1] == "--check":  # NumPy reads a file medseg wrote: print its shape, dtype and sum
        a = np.load(sys.argv[2])
        print(json.dumps({"shape": list(a.shape), "dtype": a.dtype.name, "sum": float(a.astype(np.float64).sum())}))
        return
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    entries = []
    dtypes = ["bool", "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
              "float16", "float32", "float64"]
    n = 0
    for dt in dtypes:
        for endian in "<>":
            for fortran in (False, True):
                for version in ((1, 0), (2, 0), (3, 0)):
                    n += 1
                    shape = [(4, 3, 5), (2, 3, 4, 5), (7,), (3, 6)][n % 4]
                    if dt == "bool":
                        a = rng.integers(0, 2, size=shape).astype(bool)
                    elif dt[0] in "iu":
                        info = np.iinfo(dt)
                        a = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
                    else:
                        a = (rng.normal(size=shape) * 1000).astype(dt)
                    stored = a.astype(a.dtype.newbyteorder(endian)) if a.dtype.itemsize > 1 else a
                    stored = np.asfortranarray(stored) if fortran else np.ascontiguousarray(stored)
                    name = "%s_%s_%s_v%d" % (dt, "be" if endian == ">" else "le", "F" if fortran else "C", version[0])
                    path = os.path.join(out, name + ".npy")
                    with open(path, "wb") as f:
                        np.lib.format.write_array(f, stored, version=version)
                    raw = os.path.join(out, name + ".raw")
                    np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<")) if a.dtype.itemsize > 1 else a).tofile(raw)
                    entries.append({"path": path, "raw": raw, "shape": list(shape),
                                    "dtype": "uint8" if dt == "bool" else dt})
    tmp = os.path.join(out, "manifest.json.tmp%d" % os.getpid())
    with open(tmp, "w") as f:
        json.dump({"numpy": np.__version__, "entries": entries}, f, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))


if __name__ == "__main__":
    main()
