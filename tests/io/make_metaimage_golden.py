"""Golden values for tests/io/metaimage_test.cpp from Debian's insighttoolkit5-examples.

Usage: /usr/bin/python3 make_metaimage_golden.py OUTDIR

Reads every .mha/.mhd of ITK's example data with a small independent MetaImage reader
(NumPy + zlib, following ITK's MetaImageIO: TransformMatrix lists the direction's columns),
and writes OUTDIR/manifest.json with per file {"path", "ok", "shape" (medseg order: channels
first, then k, j, i), "spacing", "origin", "direction" (3x3 row-major), "dtype", "data"
(the voxels as little-endian float64, C order)} or {"ok": false, "why"} for files it skips
(complex pixels or missing data files), which medseg must refuse too.
"""
import glob
import json
import os
import sys
import zlib

import numpy as np

ITK_DATA = "/usr/share/doc/insighttoolkit5-examples/examples/Data"
TYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
         "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
         "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}


def read(path):
    raw = open(path, "rb").read()
    fields, pos = {}, 0
    while True:
        eol = raw.index(b"\n", pos)
        key, _, value = raw[pos:eol].decode("latin-1").partition("=")
        pos = eol + 1
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break
    n = int(fields["ndims"])
    dims = [int(v) for v in fields["dimsize"].split()]
    spacing = [float(v) for v in fields.get("elementspacing", " ".join(["1"] * n)).split()]
    offset_text = fields.get("offset", fields.get("position", fields.get("origin", " ".join(["0"] * n))))
    offset = [float(v) for v in offset_text.split()]  # MetaIO takes Position and Origin for Offset
    tm = [float(v) for v in fields.get("transformmatrix", " ".join(
        "1" if i % (n + 1) == 0 else "0" for i in range(n * n))).split()]
    channels = int(fields.get("elementnumberofchannels", "1"))
    msb = fields.get("binarydatabyteordermsb", fields.get("elementbyteordermsb", "False")).lower() == "true"
    dt = np.dtype((">" if msb else "<") + TYPES[fields["elementtype"]])
    if fields["elementdatafile"].upper() == "LOCAL":
        data = raw[pos:]
    else:
        data = open(os.path.join(os.path.dirname(path), fields["elementdatafile"]), "rb").read()
    if fields.get("compresseddata", "False").lower() == "true":
        data = zlib.decompress(data)
    count = int(np.prod(dims)) * channels
    if fields.get("elementdatafile").upper() != "LOCAL" and "headersize" in fields:
        skip = int(fields["headersize"])
        data = data[len(data) - count * dt.itemsize:] if skip == -1 else data[skip:]
    a = np.frombuffer(data, dtype=dt, count=count)
    spatial = [1] * max(0, 3 - n) + list(reversed(dims))  # [k, j, i], 2-D images get k = 1
    a = a.reshape(spatial + [channels])
    a = np.moveaxis(a, -1, 0)  # channels first
    if channels == 1:
        a = a[0]
    direction = np.eye(3)
    for c in range(min(n, 3)):
        for r in range(min(n, 3)):
            direction[r, c] = tm[c * n + r]
    pad = lambda v, fill: (list(v) + [fill] * 3)[:3]
    return a, pad(spacing, 1.0), pad(offset, 0.0), direction, dt.name


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    entries = []
    for path in sorted(glob.glob(os.path.join(ITK_DATA, "*.mh[ad]"))):
        entry = {"path": path}
        try:
            a, spacing, origin, direction, dtname = read(path)
            name = "data_%d.bin" % len(entries)
            np.ascontiguousarray(a, dtype="<f8").tofile(os.path.join(out, name))
            entry.update(ok=True, shape=list(a.shape), spacing=spacing, origin=origin,
                         direction=direction.ravel().tolist(), dtype=dtname, data=name)
        except Exception as e:
            entry.update(ok=False, why="%s: %s" % (type(e).__name__, e))
        entries.append(entry)
    tmp = os.path.join(out, "manifest.json.tmp%d" % os.getpid())
    with open(tmp, "w") as f:
        json.dump({"entries": entries}, f, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))


if __name__ == "__main__":
    main()
