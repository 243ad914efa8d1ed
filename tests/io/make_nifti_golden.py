"""Golden values for tests/io/nifti_test.cpp, produced by nibabel at test time.

Usage: /usr/bin/python3 make_nifti_golden.py OUTDIR

Writes OUTDIR/manifest.json listing NIfTI/Analyze files with what nibabel makes of them:
  {"path", "ok", "shape", "affine" (RAS, 4x4), "dtype" (of the unscaled stored data),
   "scaled", "data" (file of get_fdata() as little-endian float64 in Fortran order, i.e.
   medseg's [.., k, j, i] order), "error" (when nibabel refuses the file)}.
Covers every NIfTI/Analyze file in Debian's python3-nibabel test data, plus files generated
here: every datatype, both byte orders, NIfTI-1 and -2, .nii/.nii.gz/.hdr+.img, scaling,
qform-only, sform-only, neither, sheared sform, Analyze with and without the SPM origin.
"""
import json
import os
import sys

import numpy as np
import nibabel as nib

NIBABEL_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")


def record(path, out_dir, entries, canonical=False):
    entry = {"path": path}
    try:
        img = nib.load(path)
        data = np.asanyarray(img.get_fdata(dtype=np.float64))
        name = "data_%d.bin" % len(entries)
        data.astype("<f8").ravel(order="F").tofile(os.path.join(out_dir, name))
        hdr = getattr(img, "nifti_header", img.header)  # CIFTI-2 wraps a NIfTI-2 header
        affine = getattr(img, "affine", None)
        affine = affine if affine is not None else hdr.get_best_affine()
        # nibabel moves the scaling from the header into the array proxy on load.
        slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
        entry.update(ok=True, shape=list(data.shape), affine=np.asarray(affine, dtype=float).tolist(),
                     dtype=str(hdr.get_data_dtype().newbyteorder("=").name),
                     scaled=bool(slope != 1 or inter != 0),
                     data=name, cls=type(img).__name__)
        if canonical:  # nibabel's closest canonical (RAS) orientation, for orientation_test.cpp
            can = nib.as_closest_canonical(img)
            cname = "canonical_%d.bin" % len(entries)
            np.asanyarray(can.get_fdata(dtype=np.float64)).astype("<f8").ravel(order="F").tofile(
                os.path.join(out_dir, cname))
            entry.update(canonical_data=cname, canonical_affine=np.asarray(can.affine, dtype=float).tolist(),
                         canonical_shape=list(can.shape))
    except Exception as e:  # nibabel refuses the file: medseg must refuse it too
        entry.update(ok=False, error="%s: %s" % (type(e).__name__, e))
    entries.append(entry)


def set_scaling(path, slope, inter):
    """Patches scl_slope/scl_inter into a saved file (nibabel's writer would reset them)."""
    import gzip
    import struct
    hdr = nib.load(path).header
    version = 2 if isinstance(hdr, nib.Nifti2Header) else 1
    at, fmt = (176, "dd") if version == 2 else (112, "ff")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        content = bytearray(f.read())
    content[at:at + struct.calcsize(fmt)] = struct.pack(hdr.endianness + fmt, slope, inter)
    with opener(path, "wb") as f:
        f.write(bytes(content))


def set_spm_origin(path, origin):
    """Patches SPM's origin field of an Analyze header and drops the .mat nibabel wrote."""
    import struct
    hdr = nib.load(path).header
    with open(path, "rb") as f:
        content = bytearray(f.read())
    content[253:259] = struct.pack(hdr.endianness + "hhh", *origin)
    with open(path, "wb") as f:
        f.write(bytes(content))
    mat = path[:-4] + ".mat"
    if os.path.exists(mat):
        os.remove(mat)


def rotation(seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q


def generate(out_dir, entries):
    gen = os.path.join(out_dir, "gen")
    os.makedirs(gen, exist_ok=True)
    rng = np.random.default_rng(12345)
    dtypes = ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
    n = 0
    for version, image_class, pair_class in [(1, nib.Nifti1Image, nib.Nifti1Pair), (2, nib.Nifti2Image, nib.Nifti2Pair)]:
        for dt in dtypes:
            for endian in "<>":
                for ext in [".nii", ".nii.gz", ".hdr"]:
                    n += 1
                    shape = (5, 4, 3) if (n // 3) % 3 else (5, 4, 3, 2)
                    info = np.iinfo(dt) if dt[0] in "iu" else None
                    if info is not None:
                        data = rng.integers(max(info.min, -1000), min(info.max, 1000), size=shape, endpoint=True).astype(dt)
                    else:
                        data = (rng.normal(size=shape) * 100).astype(dt)
                    affine = np.eye(4)
                    affine[:3, :3] = rotation(n) * rng.uniform(0.5, 3, size=3)
                    affine[:3, 3] = rng.uniform(-100, 100, size=3)
                    cls = pair_class if ext == ".hdr" else image_class
                    hdr = cls.header_class(endianness=endian)
                    img = cls(data, affine, header=hdr)
                    # Vary which transform is coded: both, qform only, sform only, neither.
                    variant = n % 4
                    if variant == 1:
                        img.set_sform(affine, code=0)
                        img.set_qform(affine, code=1)
                    elif variant == 2:
                        img.set_qform(affine, code=0)
                        img.set_sform(affine, code=2)
                    elif variant == 3:
                        img.set_qform(affine, code=0)
                        img.set_sform(affine, code=0)
                    else:
                        img.set_qform(affine, code=1)
                        sheared = affine.copy()
                        sheared[0, 1] += 0.25  # a sheared sform wins over the qform
                        img.set_sform(sheared, code=4)
                    path = os.path.join(gen, "v%d_%s_%s%s" % (version, dt, "be" if endian == ">" else "le", ext))
                    img.header.set_data_dtype(dt)
                    nib.save(img, path)
                    if dt in ("int16", "uint8") and endian == ">":
                        set_scaling(path, 2.5, -10.0)
                    record(path, out_dir, entries, canonical=ext == ".nii")
    # Analyze 7.5 pairs, read by nibabel as SPM2 Analyze: centred origin, SPM origin, scale factor.
    # Origins: none (centred), inside the volume, outside (ignored), and a scale factor.
    for k, (origin, scale) in enumerate([((0, 0, 0), 1.0), ((3, -2, 4), 1.0), ((100, 2, 3), 1.0), ((2, 2, 2), 0.5)]):
        data = rng.integers(-500, 500, size=(6, 5, 4)).astype("int16")
        img = nib.Spm2AnalyzeImage(data, np.diag([-2.0, 1.5, 3.0, 1.0]))
        img.header["scl_slope"] = scale
        path = os.path.join(gen, "analyze_%d.hdr" % k)
        img.to_filename(path)
        set_spm_origin(path, origin)
        record(path, out_dir, entries)
    # A 2-D image and a 5-D one.
    for shape in [(7, 6), (3, 4, 2, 1, 2)]:
        data = rng.normal(size=shape).astype("float32")
        path = os.path.join(gen, "rank%d.nii" % len(shape))
        nib.save(nib.Nifti1Image(data, np.diag([1.5, 2.0, 2.5, 1.0])), path)
        record(path, out_dir, entries)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for name in sorted(os.listdir(NIBABEL_DATA)):
        if name.endswith((".nii", ".nii.gz", ".hdr", ".img")):
            record(os.path.join(NIBABEL_DATA, name), out_dir, entries, canonical="dconn" not in name)
    generate(out_dir, entries)
    tmp = os.path.join(out_dir, "manifest.json.tmp%d" % os.getpid())
    with open(tmp, "w") as f:
        json.dump({"nibabel": nib.__version__, "entries": entries}, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "manifest.json"))


if __name__ == "__main__":
    main()
