"""Peer of `medseg bench preprocess`: the same preprocessing with scipy.ndimage and NumPy, as
MedicalSeg's prepare scripts (HUnorm, scipy.ndimage.zoom) and nnU-Net's normalisation do it.

Usage: preprocess.py IMAGE LABELS D H W OUT REPEATS SLOW_REPEATS
IMAGE is raw int16 [D,H,W], LABELS raw uint8; OUT is the target extent of every axis.
Prints one JSON object of median milliseconds per case.

Usage: preprocess.py prepare RAW_DIR OUT_DIR OUT
A MedicalSeg-style prepare of RAW_DIR/images/*.nii and RAW_DIR/labels/*.nii (nibabel read,
HUnorm, zoom order 1 / order 0 to OUT^3, np.save), one case after another as its
prepare scripts run. Prints {"prepare": ms}.
"""
import os
import json
import sys
import time

import numpy as np
import scipy
from scipy import ndimage


def median_ms(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def once_ms(f):
    start = time.perf_counter()
    f()
    return (time.perf_counter() - start) * 1e3


# xp: the array module, NumPy here; the CuPy peer (preprocess_cupy.py) passes cupy.
def hu_window(x, lo=-1250.0, hi=250.0, xp=np):
    # MedicalSeg's HUnorm without the x255: NaN fill (a no-op on integers), clip, min-max.
    v = (x.astype(xp.float32) - lo) / (hi - lo)
    return xp.clip(v, 0, 1, out=v)


def zscore(x):
    return (x - x.mean()) / max(float(x.std()), 1e-8)


def crop_nonzero(x, xp=np):
    # nnU-Net's get_bbox_from_mask + slicing.
    nz = xp.nonzero(x != -1024)
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in nz)
    return xp.ascontiguousarray(x[box])


def prepare(raw, out_dir, out):
    import nibabel as nib

    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "labels"), exist_ok=True)
    start = time.perf_counter()
    for name in sorted(os.listdir(os.path.join(raw, "images"))):
        ct = np.asanyarray(nib.load(os.path.join(raw, "images", name)).dataobj)
        lb = np.asanyarray(nib.load(os.path.join(raw, "labels", name)).dataobj)
        factors = [out / s for s in ct.shape]
        image = ndimage.zoom(hu_window(ct), factors, order=1)
        label = ndimage.zoom(lb, factors, order=0)
        stem = name.split(".")[0]
        np.save(os.path.join(out_dir, "images", stem + ".npy"), image.astype(np.float32))
        np.save(os.path.join(out_dir, "labels", stem + ".npy"), label)
    print(json.dumps({"prepare": (time.perf_counter() - start) * 1e3,
                      "peer": f"nibabel {nib.__version__} / scipy {scipy.__version__}"}))


def main():
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    image_path, labels_path = sys.argv[1], sys.argv[2]
    d, h, w, out = (int(v) for v in sys.argv[3:7])
    repeats, slow_repeats = int(sys.argv[7]), int(sys.argv[8])
    ct = np.fromfile(image_path, dtype=np.int16).reshape(d, h, w)
    labels = np.fromfile(labels_path, dtype=np.uint8).reshape(d, h, w)
    windowed = hu_window(ct)
    factors = [out / d, out / h, out / w]
    small = ndimage.zoom(windowed, factors, order=1)

    def chain():
        zscore(ndimage.zoom(hu_window(ct), factors, order=1))

    result = {
        "peer": f"scipy {scipy.__version__} / numpy {np.__version__}",
        "window": median_ms(lambda: hu_window(ct), repeats),
        "zoom1": median_ms(lambda: ndimage.zoom(windowed, factors, order=1), repeats),
        "zoom0_labels": median_ms(lambda: ndimage.zoom(labels, factors, order=0), repeats),
        "zscore": median_ms(lambda: zscore(windowed), repeats),
        "zscore_small": median_ms(lambda: zscore(small), repeats),
        "crop": median_ms(lambda: crop_nonzero(ct), repeats),
        "chain": median_ms(chain, max(1, repeats // 2)),
    }
    # Order 3 takes seconds with SciPy: fewer runs.
    result["zoom3"] = min(once_ms(lambda: ndimage.zoom(windowed, factors, order=3)) for _ in range(slow_repeats))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
