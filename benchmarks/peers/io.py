"""Peer of `medseg bench io`: nibabel writing and reading the same .nii.gz volume.

Usage: io.py D H W REPEATS OURS_FILE. Builds the int16 volume medseg builds (same formula),
times nib.save to .nii.gz (nibabel's default gzip level, 1) and nib.load + reading the
voxels, and also times reading OURS_FILE (the file medseg wrote). Prints one JSON object of
median milliseconds, and the path of nibabel's file for medseg to read in turn.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np
import nibabel as nib


def median_ms(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def volume(d, h, w):
    k, j, i = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    v = (i * 37 + j * 11 + k * 5) % 1200 - 1000 + (i * j + k) % 17
    return v.astype(np.int16)  # [D, H, W]


def main():
    d, h, w, repeats = (int(a) for a in sys.argv[1:5])
    ours = sys.argv[5]
    data = volume(d, h, w).transpose(2, 1, 0)  # nibabel's (i, j, k) view of the same memory
    img = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0]))
    img.header.set_data_dtype(np.int16)
    folder = tempfile.mkdtemp(prefix="medseg_bench_io_")
    path = os.path.join(folder, "nibabel.nii.gz")
    out = {"peer": f"nibabel {nib.__version__} (zlib, numpy {np.__version__})"}
    out["write"] = median_ms(lambda: nib.save(img, path), repeats)
    out["read"] = median_ms(lambda: np.asanyarray(nib.load(path).dataobj), repeats)
    out["read_ours"] = median_ms(lambda: np.asanyarray(nib.load(ours).dataobj), repeats)
    ok = np.array_equal(np.asanyarray(nib.load(ours).dataobj), data)
    out["ours_matches"] = bool(ok)
    out["nibabel_file"] = path
    out["nibabel_bytes"] = os.path.getsize(path)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
