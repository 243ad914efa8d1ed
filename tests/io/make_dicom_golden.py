"""Golden values for tests/io/dicom_test.cpp from Debian's python3-pydicom test files.

Usage: /usr/bin/python3 make_dicom_golden.py OUTDIR

For every file of pydicom's test data with pixel data: pydicom's pixel_array after the
modality LUT (RescaleSlope/Intercept) as little-endian float64 in [frames, rows, columns]
order, with ImagePositionPatient, ImageOrientationPatient and PixelSpacing, or
{"ok": false} when medseg's subset does not cover the file (compressed transfer syntax,
colour, 1-bit, or pydicom cannot decode it) and medseg must refuse it. Also the series of
pydicom's dicomdirtests folders, stacked by ImagePositionPatient along the slice normal.
"""
import glob
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.pixel_data_handlers.util import apply_modality_lut

UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


def pixels(ds):
    arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return arr.reshape(frames, int(ds.Rows), int(ds.Columns))


def covered(ds):
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "1.2.840.10008.1.2"))
    return (ts in UNCOMPRESSED and int(ds.get("SamplesPerPixel", 1)) == 1
            and int(ds.get("BitsAllocated", 0)) in (8, 16, 32))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    root = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    entries, series = [], []
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isdir(path):
            continue
        with open(path, "rb") as f:
            head = f.read(132)
        if head[128:132] != b"DICM":
            continue
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            continue
        if "PixelData" not in ds:
            continue
        entry = {"path": path}
        try:
            if not covered(ds):
                raise ValueError("outside medseg's subset")
            a = pixels(ds)
            name = "dcm_%d.bin" % len(entries)
            a.astype("<f8").tofile(os.path.join(out, name))
            entry.update(ok=True, shape=list(a.shape), data=name,
                         position=[float(v) for v in ds.get("ImagePositionPatient", [0, 0, 0])],
                         spacing=[float(v) for v in ds.get("PixelSpacing", [1, 1])])
        except Exception as e:
            entry.update(ok=False, why=str(e)[:200])
        entries.append(entry)
    for folder in sorted(glob.glob(os.path.join(root, "dicomdirtests", "*", "*"))):
        try:
            dss = [pydicom.dcmread(f) for f in sorted(glob.glob(os.path.join(folder, "*")))]
            dss = [d for d in dss if "PixelData" in d]
            if len({d.SeriesInstanceUID for d in dss}) != 1 or len(dss) < 2:
                continue
            o = np.array([float(v) for v in dss[0].ImageOrientationPatient])
            normal = np.cross(o[:3], o[3:])
            dss.sort(key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])))
            along = [float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])) for d in dss]
            steps = np.diff(along)
            uniform = bool(np.all(np.abs(steps - steps.mean()) <= 1e-3 * steps.mean() + 1e-4) and steps.mean() > 0)
            entry = {"folder": folder, "uniform": uniform}
            if uniform:
                a = np.stack([pixels(d)[0] for d in dss])
                name = "series_%d.bin" % len(series)
                a.astype("<f8").tofile(os.path.join(out, name))
                entry.update(shape=list(a.shape), data=name, origin=[float(v) for v in dss[0].ImagePositionPatient],
                             spacing=[float(dss[0].PixelSpacing[1]), float(dss[0].PixelSpacing[0]), float(steps.mean())],
                             normal=normal.tolist())
            series.append(entry)
        except Exception as e:
            series.append({"folder": folder, "uniform": False, "why": str(e)[:200]})
    tmp = os.path.join(out, "manifest.json.tmp%d" % os.getpid())
    with open(tmp, "w") as f:
        json.dump({"pydicom": pydicom.__version__, "entries": entries, "series": series}, f, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))


if __name__ == "__main__":
    main()
