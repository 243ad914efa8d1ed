"""Seed corpora for the fuzz targets: small valid files of each format, written by nibabel,
NumPy and by hand (MetaImage), so the fuzzer starts from inputs that reach deep code.

Usage: /usr/bin/python3 make_seeds.py OUTDIR   (creates OUTDIR/<target>/ folders)
"""
import gzip
import io
import os
import sys
import zlib

import numpy as np

out = sys.argv[1]
for t in ("nifti", "npy", "metaimage", "gzip", "dicom", "nnunet_json"):
    os.makedirs(os.path.join(out, t), exist_ok=True)
rng = np.random.default_rng(0)
try:
    import nibabel as nib
    for k, (dt, shape) in enumerate([("int16", (3, 4, 2)), ("float32", (2, 2, 2, 2)), ("uint8", (5, 1, 1))]):
        data = rng.integers(0, 100, size=shape).astype(dt)
        for cls in (nib.Nifti1Image, nib.Nifti2Image):
            img = cls(data, np.diag([1.5, 2, 3, 1]))
            raw = img.to_bytes()
            open(os.path.join(out, "nifti", "%s_%d.nii" % (cls.__name__, k)), "wb").write(raw)
            open(os.path.join(out, "nifti", "%s_%d.nii.gz" % (cls.__name__, k)), "wb").write(gzip.compress(raw, 1))
except ImportError:
    pass
for k, (dt, order) in enumerate([("<f4", "C"), (">i2", "F"), ("|u1", "C")]):
    buf = io.BytesIO()
    np.save(buf, np.asarray(rng.integers(0, 50, size=(3, 2, 4)), dtype=dt, order=order))
    open(os.path.join(out, "npy", "a%d.npy" % k), "wb").write(buf.getvalue())
voxels = np.arange(24, dtype="<i2").tobytes()
head = "ObjectType = Image\nNDims = 3\nDimSize = 2 3 4\nElementSpacing = 1 2 3\nOffset = 0 0 0\n" \
       "TransformMatrix = 1 0 0 0 1 0 0 0 1\nElementType = MET_SHORT\n"
open(os.path.join(out, "metaimage", "plain.mha"), "wb").write(
    (head + "ElementDataFile = LOCAL\n").encode() + voxels)
z = zlib.compress(voxels)
open(os.path.join(out, "metaimage", "z.mha"), "wb").write(
    (head + "CompressedData = True\nCompressedDataSize = %d\nElementDataFile = LOCAL\n" % len(z)).encode() + z)
open(os.path.join(out, "gzip", "a.gz"), "wb").write(gzip.compress(voxels))
open(os.path.join(out, "gzip", "z.zraw"), "wb").write(z)
try:  # DICOM seeds: pydicom's small test files in each uncompressed transfer syntax, plus the
    # paths medseg decodes itself (RLE, 8/16/32-bit colour RLE, YBR colour, 1-bit)
    import shutil
    import pydicom
    root = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    for name in ("CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "rtdose_1frame.dcm",
                 "MR_small_RLE.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit_2frame.dcm",
                 "SC_rgb_small_odd.dcm", "SC_ybr_full_422_uncompressed.dcm", "liver_1frame.dcm"):
        if os.path.exists(os.path.join(root, name)):
            shutil.copy(os.path.join(root, name), os.path.join(out, "dicom", name))
except ImportError:
    pass
# nnU-Net JSON seeds: plans nnU-Net's planner wrote, one fingerprint, one dataset.json.
import json
here = os.path.dirname(os.path.abspath(__file__))
written = json.load(open(os.path.join(here, "..", "data", "nnunet", "planner_expected_by_nnunet.json")))
cases = json.load(open(os.path.join(here, "..", "data", "nnunet", "planner_cases.json")))
for name in ("ct_liver_cascade", "prostate_coarse_last_axis", "two_d_only"):
    open(os.path.join(out, "nnunet_json", name + "_plans.json"), "w").write(json.dumps(written[name]))
open(os.path.join(out, "nnunet_json", "fingerprint.json"), "w").write(json.dumps(cases["tiny_few_cases"]["fingerprint"]))
open(os.path.join(out, "nnunet_json", "dataset.json"), "w").write(json.dumps(cases["brats_multichannel_regions"]["dataset_json"]))
