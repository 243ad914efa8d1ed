"""Golden values for tests/preprocess: SciPy and NumPy doing what each medseg op does.

Usage: reference.py DIR. Reads DIR/cases.txt, one case a line: `NAME OP key=value ...`.
For each case writes DIR/NAME.in (the input, made here from a seeded generator) and
DIR/NAME.ref (the expected output), raw little-endian in the dtype the line names.
"""
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage


def ints(text):
    return [int(v) for v in text.split(",")]


def make_input(args, seed):
    rng = np.random.default_rng(seed)
    shape = ints(args["in"])
    dtype = np.dtype(args.get("dtype", "float32"))
    kind = args.get("data", "normal")
    if kind == "ct":  # HU-like values with air, tissue, bone and some NaN-free outliers
        x = rng.normal(0, 400, shape) - 300
        x[rng.random(shape) < 0.05] = -1024
        x[rng.random(shape) < 0.02] = 2000
    elif kind == "blobs":  # sparse voxels: many components of all sizes
        x = (rng.random(shape) < float(args.get("density", "0.3"))).astype(np.uint8)
    elif kind == "labels":
        x = rng.integers(0, int(args.get("labels", 3)), shape)
    elif kind == "positive":
        x = rng.random(shape) * 100
        x[rng.random(shape) < 0.3] = 0
    else:
        x = rng.standard_normal(shape) * 10 + 3
    return x.astype(dtype)


def zoom(x, args):
    out = ints(args["out"])
    spatial = x.shape[-3:]
    factors = [o / i for o, i in zip(out, spatial)]
    grid = args.get("grid", "corners") == "extent"
    mode = args.get("boundary", "mirror" if grid else "constant")
    order = int(args["order"])
    separate = int(args.get("separate_axis", "-1"))
    src = x if order == 0 else x.astype(np.float64)

    def one(v):
        if separate < 0:
            r = ndimage.zoom(v, factors, order=order, mode=mode, grid_mode=grid)
        else:  # zoom is separable and a factor of 1 is the identity: one axis, then the others
            f_axis = [f if a == separate else 1.0 for a, f in enumerate(factors)]
            f_rest = [1.0 if a == separate else f for a, f in enumerate(factors)]
            r = ndimage.zoom(v.astype(np.float64), f_rest, order=order, mode=mode, grid_mode=grid)
            r = ndimage.zoom(r, f_axis, order=int(args["separate_order"]), mode=mode, grid_mode=grid)
        assert list(r.shape) == out, (r.shape, out)
        return r

    r = np.stack([one(c) for c in src]) if x.ndim == 4 else one(src)
    return r if order == 0 and separate < 0 else r.astype(np.float32)


def window(x, args):
    # MedicalSeg's HUnorm: NaN to lo, clip to [lo, hi], min-max to [0, 1] (optionally x255).
    lo, hi = float(args["lo"]), float(args["hi"])
    v = x.astype(np.float64)
    v = np.nan_to_num(v, nan=lo)
    v = np.clip(v, lo, hi)
    v = (v - lo) / (hi - lo)
    if args.get("scale255") == "1":
        v = v * 255
    return v.astype(np.float32)


def zscore(x, args):
    v = x.astype(np.float64)
    if args.get("nonzero") == "1":
        mask = v != 0
        m, s = v[mask].mean(), v[mask].std()
        r = v.copy()
        r[mask] = (v[mask] - m) / max(s, 1e-8)
        return r.astype(np.float32)
    return ((v - v.mean()) / max(v.std(), 1e-8)).astype(np.float32)


def ct_norm(x, args):
    # nnU-Net's CTNormalization with statistics of the foreground of this image.
    v = x.astype(np.float64)
    fg = v[v > float(args.get("threshold", "-500"))]
    lo, hi = np.percentile(fg, 0.5), np.percentile(fg, 99.5)
    mean, std = fg.mean(), fg.std()
    return ((np.clip(v, lo, hi) - mean) / max(std, 1e-8)).astype(np.float32)


def minmax(x, args):
    lo, hi = float(args["lo"]), float(args["hi"])
    v = np.clip(x.astype(np.float64), lo, hi)
    mn, mx = v.min(), v.max()
    return ((v - mn) / (mx - mn)).astype(np.float32)


def pad(x, args):
    before, after = ints(args["before"]), ints(args["after"])
    widths = list(zip(before, after))
    if x.ndim == 4:
        widths = [(0, 0)] + widths
    mode = args["mode"]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=float(args.get("value", "0")))
    return np.pad(x, widths, mode=mode)


EXTRA = {}


def segmentation(x, args):
    # nnU-Net's resize_segmentation (per label, ascending, mask >= 0.5 wins), with skimage's
    # geometry (grid_mode=True, edge clamping), and its separate-z rule: order 0 on one axis.
    out = ints(args["out"])
    factors = [o / i for o, i in zip(out, x.shape)]
    order = int(args["order"])
    axis = int(args.get("separate_axis", "-1"))

    def z(v, f, o):
        return ndimage.zoom(v, f, order=o, mode="nearest", grid_mode=True)

    result = np.zeros(out, dtype=x.dtype)
    ties = np.zeros(out, dtype=np.uint8)
    for label in np.unique(x):
        mask = (x == label).astype(np.float64)
        if axis < 0:
            m = z(mask, factors, order)
        else:
            m = z(mask, [1.0 if a == axis else f for a, f in enumerate(factors)], order)
            m = z(m, [f if a == axis else 1.0 for a, f in enumerate(factors)], 0)
        result[m >= 0.5] = label
        ties |= np.abs(m - 0.5) < 1e-6
    # Where a mask is 0.5 in exact arithmetic, float64 may land on either side: the test
    # accepts either label there (ties is written next to the reference).
    EXTRA["ties"] = ties
    return result


def components(x, args):
    # scipy.ndimage.label of the nonzero voxels, faces (6) or full (26) connectivity.
    rank = 1 if args["connectivity"] == "6" else 3
    ids, _ = ndimage.label(x != 0, structure=ndimage.generate_binary_structure(3, rank))
    return ids.astype(np.int32)


OPS = {"cc": components, "seg": segmentation, "pad": pad, "zoom": zoom, "window": window, "zscore": zscore, "ct_norm": ct_norm, "minmax": minmax}


def main():
    root = Path(sys.argv[1])
    for seed, line in enumerate((root / "cases.txt").read_text().splitlines()):
        if not line.strip():
            continue
        name, op, *rest = line.split()
        args = dict(kv.split("=", 1) for kv in rest)
        x = make_input(args, seed)
        x.tofile(root / f"{name}.in")
        EXTRA.clear()
        OPS[op](x, args).tofile(root / f"{name}.ref")
        for key, value in EXTRA.items():
            value.tofile(root / f"{name}.{key}")


if __name__ == "__main__":
    main()
