"""Peer of `medseg bench loader`: nnU-Net's default 3D augmentation written with SciPy/NumPy.

The same chain and probabilities as transforms::nnunet_3d: foreground-oversampled crop of the
initial patch, rotation (+-30 deg, p 0.2) and scaling (0.7..1.4, p 0.2) in one
scipy.ndimage.map_coordinates pass (image order 1, label per-class order 1 then argmax, as
batchgenerators), Gaussian noise p 0.1, Gaussian blur p 0.2, brightness p 0.15, contrast
p 0.15, low resolution p 0.25 (scipy.ndimage.zoom order 0 down, order 1 up), inverted gamma
p 0.1, gamma p 0.3, mirroring. Single-threaded, as SciPy is.

Usage: loader.py CASE_SIZE PATCH SAMPLES. Prints {"sample": median ms per sample, "peer": ...}.
"""
import json
import math
import sys
import time

import numpy as np
import scipy
import scipy.ndimage as ndi


def initial_patch_size(patch, degrees=30.0, min_scale=0.85):
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    best = [float(p) for p in patch]
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        best[u] = max(best[u], abs(c * patch[u] - s * patch[v]))
        best[v] = max(best[v], abs(s * patch[u] + c * patch[v]))
    return [int(b / min_scale) for b in best]


def crop_or_pad(x, begin, size):
    out = np.zeros(x.shape[:1] + tuple(size), dtype=x.dtype)
    src = [slice(max(b, 0), min(b + s, n)) for b, s, n in zip(begin, size, x.shape[1:])]
    dst = [slice(sl.start - b, sl.stop - b) for sl, b in zip(src, begin)]
    out[(slice(None), *dst)] = x[(slice(None), *src)]
    return out


def foreground_crop(img, lbl, size, rng, fraction=0.33):
    n = img.shape[1:]
    ranges = [(0, m - s) if m >= s else (-((s - m) // 2),) * 2 for m, s in zip(n, size)]
    begin = [int(rng.integers(lo, hi + 1)) for lo, hi in ranges]
    if rng.random() < fraction:
        classes = [c for c in np.unique(lbl) if c > 0]
        if classes:
            cls = classes[rng.integers(len(classes))]
            where = np.argwhere(lbl[0] == cls)
            voxel = where[rng.integers(len(where))]
            begin = [int(np.clip(v - s // 2, lo, hi)) for v, s, (lo, hi) in zip(voxel, size, ranges)]
    return crop_or_pad(img, begin, size), crop_or_pad(lbl, begin, size)


def rotation(a, b, t):
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = math.cos(t), -math.sin(t), math.sin(t), math.cos(t)
    return r


def spatial(img, lbl, patch, rng):
    rotate = rng.random() < 0.2
    angles = [math.radians(rng.uniform(-30, 30)) for _ in range(3)]
    zoom = rng.random() < 0.2
    f = rng.uniform(0.7, 1.4)
    n = img.shape[1:]
    if not rotate and not zoom:
        begin = [(m - s) // 2 for m, s in zip(n, patch)]
        return crop_or_pad(img, begin, patch), crop_or_pad(lbl, begin, patch)
    m = np.eye(3)
    if rotate:
        m = rotation(1, 2, angles[0]) @ rotation(0, 2, angles[1]) @ rotation(0, 1, angles[2])
    if zoom:
        m = m * f
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) - (s - 1) / 2 for s in patch], indexing="ij"))
    coords = np.tensordot(m.astype(np.float32), grid, axes=1)
    for k in range(3):
        coords[k] += (patch[k] - 1) / 2 + (n[k] - patch[k]) // 2
    out = np.stack([ndi.map_coordinates(img[c], coords, order=1, mode="constant", cval=0.0) for c in range(img.shape[0])])
    classes = np.unique(lbl)
    onehot = np.stack([ndi.map_coordinates((lbl[0] == c).astype(np.float32), coords, order=1, mode="constant", cval=0.0)
                       for c in classes])
    return out, classes[np.argmax(onehot, axis=0)][None].astype(lbl.dtype)


def gamma(x, invert, rng, low=0.7, high=1.5):
    g = rng.uniform(low, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, high)
    if invert:
        x = -x
    mean, sd = x.mean(), x.std()
    lo, rnge = x.min(), x.max() - x.min()
    x = np.power((x - lo) / (rnge + 1e-7), g) * rnge + lo
    x = (x - x.mean()) * (sd / (x.std() + 1e-8)) + mean
    return -x if invert else x


def augment(img, lbl, patch, rng):
    img, lbl = foreground_crop(img, lbl, initial_patch_size(patch), rng)
    img, lbl = spatial(img, lbl, patch, rng)
    if rng.random() < 0.1:
        img = img + rng.normal(0.0, rng.uniform(0, 0.1), img.shape).astype(np.float32)
    if rng.random() < 0.2:
        img = img.copy()
        for c in range(img.shape[0]):
            if rng.random() < 0.5:
                img[c] = ndi.gaussian_filter(img[c], [rng.uniform(0.5, 1.0) for _ in range(3)])
    if rng.random() < 0.15:
        img = img * rng.uniform(0.75, 1.25)
    if rng.random() < 0.15:
        img = img.copy()
        for c in range(img.shape[0]):
            f, mean, lo, hi = rng.uniform(0.75, 1.25), img[c].mean(), img[c].min(), img[c].max()
            img[c] = np.clip((img[c] - mean) * f + mean, lo, hi)
    if rng.random() < 0.25:
        img = img.copy()
        for c in range(img.shape[0]):
            if rng.random() < 0.5:
                z = rng.uniform(0.5, 1.0)
                low = ndi.zoom(img[c], z, order=0)
                img[c] = ndi.zoom(low, [a / b for a, b in zip(img[c].shape, low.shape)], order=1)[
                    : img.shape[1], : img.shape[2], : img.shape[3]]
    if rng.random() < 0.1:
        img = np.stack([gamma(img[c], True, rng) for c in range(img.shape[0])])
    if rng.random() < 0.3:
        img = np.stack([gamma(img[c], False, rng) for c in range(img.shape[0])])
    for axis in (1, 2, 3):
        if rng.random() < 0.5:
            img, lbl = np.flip(img, axis), np.flip(lbl, axis)
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(lbl)


def make_case(size, index):
    rng = np.random.default_rng(index)
    img = rng.standard_normal((1, size, size, size), dtype=np.float32)
    grid = np.indices((size, size, size), dtype=np.float32)
    centre = size * np.array([0.4, 0.5, 0.6], dtype=np.float32)
    d2 = sum((grid[k] - centre[k]) ** 2 for k in range(3))
    lbl = np.zeros((1, size, size, size), dtype=np.uint8)
    lbl[0][d2 < (size * 0.15) ** 2] = 1
    lbl[0][d2 < (size * 0.07) ** 2] = 2
    img += lbl.astype(np.float32)
    return img, lbl


def main():
    size, patch, samples = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    cases = [make_case(size, i) for i in range(4)]
    rng = np.random.default_rng(0)
    augment(*cases[0], [patch] * 3, rng)  # warm-up
    times = []
    for i in range(samples):
        start = time.perf_counter()
        augment(*cases[i % len(cases)], [patch] * 3, rng)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    # The mean, not the median: the chain's cost is its random mix of transforms.
    print(json.dumps({"sample": sum(times) / len(times), "peer": f"scipy {scipy.__version__} / numpy {np.__version__}"}))


if __name__ == "__main__":
    main()
