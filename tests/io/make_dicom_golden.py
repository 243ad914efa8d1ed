"""Golden values for tests/io/dicom_test.cpp from Debian's python3-pydicom test files.

Usage: /usr/bin/python3 make_dicom_golden.py OUTDIR

For every file of pydicom's test data with pixel data: pydicom's pixel_array after the
modality LUT (RescaleSlope/Intercept) as little-endian float64 in [frames, rows, columns]
order ([3, frames, rows, columns] RGB for colour, YBR_FULL/YBR_FULL_422 converted with
pydicom's convert_color_space), with ImagePositionPatient and PixelSpacing, or {"ok": false}
when pydicom cannot decode the file and medseg must refuse it too. Compressed pixel data is
decoded by pydicom's gdcm handler (Debian's python3-gdcm: the GDCM that medseg::dicom_codecs
links) and RLE by pydicom's own; "codec" says which medseg needs ("gdcm" files are refused by a
build without medseg::dicom_codecs). Also the series of pydicom's dicomdirtests folders,
stacked by ImagePositionPatient along the slice normal.
"""
import glob
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.pixel_data_handlers import gdcm_handler, numpy_handler, rle_handler
from pydicom.pixel_data_handlers.util import apply_modality_lut, convert_color_space

# Uncompressed data through numpy, JPEG/JPEG-LS/JPEG 2000 through GDCM only (no Pillow or
# other decoders), RLE through pydicom's decoder.
# Without python3-gdcm the compressed files get no golden values ("no_golden").
HAVE_GDCM = gdcm_handler.is_available()
pydicom.config.pixel_data_handlers = [numpy_handler, gdcm_handler, rle_handler] if HAVE_GDCM else [numpy_handler,
                                                                                                 rle_handler]
RLE = "1.2.840.10008.1.2.5"
YBR = ("YBR_FULL", "YBR_FULL_422")


def transfer_syntax(ds):
    return str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "1.2.840.10008.1.2"))


def codec(ds):
    ts = transfer_syntax(ds)
    return "rle" if ts == RLE else "gdcm" if ts in gdcm_handler.SUPPORTED_TRANSFER_SYNTAXES else "native"


def decoded(ds, log):
    """pixel_array; for GDCM's syntaxes, refused when GDCM logged an error while decoding.

    pydicom's gdcm handler cannot see GDCM's failure (its Python GetBuffer drops the status)
    and returns whatever the buffer held, so GDCM's own error log is the signal.
    """
    if codec(ds) != "gdcm":
        return ds.pixel_array
    gdcm_handler.gdcm.Trace.SetStreamToFile(log)
    try:
        arr = ds.pixel_array
    finally:
        gdcm_handler.gdcm.Trace.SetStreamToFile(log + ".rest")
    with open(log) as f:
        errors = [line for line in f if line.startswith("Error")]
    if errors:
        raise ValueError("GDCM cannot decode it: " + errors[0].strip())
    return arr


def pixels(ds, log=None):
    arr = decoded(ds, log)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        if ds.PhotometricInterpretation in YBR:
            arr = convert_color_space(arr, ds.PhotometricInterpretation, "RGB")
        arr = arr.reshape(frames, int(ds.Rows), int(ds.Columns), 3).transpose(3, 0, 1, 2)
        return apply_modality_lut(arr, ds).astype(np.float64)
    arr = apply_modality_lut(arr, ds).astype(np.float64)
    return arr.reshape(frames, int(ds.Rows), int(ds.Columns))


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
        entry = {"path": path, "codec": codec(ds), "ybr": str(ds.get("PhotometricInterpretation", "")) in YBR}
        if entry["codec"] == "gdcm" and not HAVE_GDCM:
            entry.update(ok=False, no_golden=True, why="python3-gdcm is not installed")
            entries.append(entry)
            continue
        try:
            a = pixels(ds, os.path.join(out, "gdcm.log"))
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
        json.dump({"pydicom": pydicom.__version__, "gdcm": gdcm_handler.gdcm.Version.GetVersion() if HAVE_GDCM else None, "entries": entries,
                   "series": series}, f, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))


if __name__ == "__main__":
    main()
