"""Peer of `medseg bench metrics`: the same case evaluated with scipy.ndimage and NumPy the way
MONAI computes it on the CPU (compute_hausdorff_distance(percentile=95),
compute_average_surface_distance(symmetric=True): crop to the union's bounding box with a
margin of 1, surfaces = mask ^ binary_erosion(mask), distance_transform_edt(~surface,
sampling=spacing)) and nnU-Net's Dice/IoU from tp/fp/fn counts.

Usage: metrics.py STEM D H W SPACING REPEATS (STEM.ref and STEM.pred raw uint8 [D,H,W];
SPACING as 2.5,0.8,0.8). Prints one JSON object of median milliseconds per case.
"""
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


def overlap(pred, ref, k):
    out = []
    for c in range(k):
        p, g = pred == c, ref == c
        tp, fp, fn = np.sum(p & g), np.sum(p & ~g), np.sum(~p & g)
        out.append((2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)))
    return out


def surface(pred, ref, c, spacing):
    p, g = pred == c, ref == c
    nz = np.nonzero(p | g)
    box = tuple(slice(max(int(a.min()) - 1, 0), int(a.max()) + 2) for a in nz)
    p, g = p[box], g[box]
    sp, sg = p ^ ndimage.binary_erosion(p), g ^ ndimage.binary_erosion(g)
    d_pg = ndimage.distance_transform_edt(~sg, sampling=spacing)[sp]
    d_gp = ndimage.distance_transform_edt(~sp, sampling=spacing)[sg]
    hd95 = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
    return hd95, np.concatenate([d_pg, d_gp]).mean()


def main():
    stem = sys.argv[1]
    shape = tuple(int(v) for v in sys.argv[2:5])
    spacing = [float(v) for v in sys.argv[5].split(",")]
    repeats = int(sys.argv[6])
    ref = np.fromfile(stem + ".ref", dtype=np.uint8).reshape(shape)
    pred = np.fromfile(stem + ".pred", dtype=np.uint8).reshape(shape)
    result = {"peer": f"scipy {scipy.__version__} / numpy {np.__version__}"}
    result["overlap"] = median_ms(lambda: overlap(pred, ref, 3), repeats)
    result["surface"] = median_ms(lambda: [surface(pred, ref, c, spacing) for c in (1, 2)], repeats)
    result["edt"] = median_ms(lambda: ndimage.distance_transform_edt(ref, sampling=spacing), repeats)
    for c in (1, 2):
        result[f"hd95_{c}"] = float(surface(pred, ref, c, spacing)[0])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
