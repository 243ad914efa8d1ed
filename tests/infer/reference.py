"""NumPy reference of nnU-Net's sliding-window inference for tests/infer.

Usage: reference.py DIR. Reads DIR/cases.txt, one case a line: `NAME key=value ...` with keys
seed, C, K, shape (D,H,W), roi, overlap, sigma (sigma_scale), blend (gaussian|constant), mirror (axes, e.g. 0,2, or
none), pad (constant|edge), output (probabilities|logits), ksize (odd conv size), pos (0|1).
For each case writes, raw little-endian float32:
  NAME.image   the image [C,D,H,W] (seeded random);
  NAME.params  the predictor: conv weights [K,C,k,k,k], bias [K], position gains [K];
  NAME.gauss   the importance map [roi] (scipy gaussian_filter of a delta, as nnU-Net);
  NAME.out     the expected result [K,D,H,W];
and NAME.steps, the window starts of each axis, one axis a line.
The predictor: logits[k] = bias[k] + sum_c correlate(x[c], w[k,c], mode=constant)
                           + pos[k] * (z/rd - 0.5 y/rh + 0.25 x/rw), (z,y,x) in the window.
"""
import itertools
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage


def ints(text):
    return [int(v) for v in text.split(",")]


def steps_for(image_size, tile_size, tile_step_size):
    # nnunetv2.inference.sliding_window_prediction.compute_steps_for_sliding_window
    target = [i * tile_step_size for i in tile_size]
    num_steps = [int(np.ceil((i - k) / j)) + 1 for i, j, k in zip(image_size, target, tile_size)]
    steps = []
    for dim in range(len(tile_size)):
        max_step_value = image_size[dim] - tile_size[dim]
        actual = max_step_value / (num_steps[dim] - 1) if num_steps[dim] > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(num_steps[dim])])
    return steps


def gaussian(tile_size, sigma_scale=1.0 / 8):
    # nnunetv2 compute_gaussian, in float64 (nnU-Net casts to float16 on the GPU)
    tmp = np.zeros(tile_size)
    tmp[tuple(i // 2 for i in tile_size)] = 1
    g = ndimage.gaussian_filter(tmp, [i * sigma_scale for i in tile_size], 0, mode="constant", cval=0)
    g /= g.max()
    g[g == 0] = g[g != 0].min()
    return g


def predictor(weights, bias, pos, roi):
    k_out = weights.shape[0]
    zz, yy, xx = np.meshgrid(*[np.arange(r, dtype=np.float64) for r in roi], indexing="ij")
    position = zz / roi[0] - 0.5 * yy / roi[1] + 0.25 * xx / roi[2]

    def predict(x):  # [n,C,d,h,w] -> [n,K,d,h,w]
        out = np.zeros((x.shape[0], k_out) + x.shape[2:])
        for n in range(x.shape[0]):
            for k in range(k_out):
                acc = np.full(x.shape[2:], bias[k]) + pos[k] * position
                for c in range(x.shape[1]):
                    acc += ndimage.correlate(x[n, c], weights[k, c], mode="constant", cval=0.0)
                out[n, k] = acc
        return out

    return predict


def sliding_window(image, predict, roi, overlap, blend, mirror, pad, k_out, sigma):
    spatial = image.shape[1:]
    padded_size = [max(s, r) for s, r in zip(spatial, roi)]
    lo = [(p - s) // 2 for p, s in zip(padded_size, spatial)]
    widths = [(0, 0)] + [(l, p - s - l) for l, p, s in zip(lo, padded_size, spatial)]
    data = np.pad(image, widths, mode="constant" if pad == "constant" else "edge")
    steps = steps_for(padded_size, roi, 1 - overlap)
    weight = gaussian(roi, sigma) if blend == "gaussian" else np.ones(roi)
    logits = np.zeros((k_out,) + tuple(padded_size))
    counts = np.zeros(padded_size)
    combos = [c for i in range(len(mirror)) for c in itertools.combinations([m + 2 for m in mirror], i + 1)]
    for sz in steps[0]:
        for sy in steps[1]:
            for sx in steps[2]:
                box = (slice(sz, sz + roi[0]), slice(sy, sy + roi[1]), slice(sx, sx + roi[2]))
                x = data[(slice(None),) + box][None]
                p = predict(x)
                for axes in combos:
                    p += np.flip(predict(np.flip(x, axes)), axes)
                p /= len(combos) + 1
                logits[(slice(None),) + box] += p[0] * weight
                counts[box] += weight
    logits /= counts
    crop = (slice(None),) + tuple(slice(l, l + s) for l, s in zip(lo, spatial))
    return logits[crop], steps, weight


def main():
    out = Path(sys.argv[1])
    for line in (out / "cases.txt").read_text().splitlines():
        name, *pairs = line.split()
        a = dict(p.split("=", 1) for p in pairs)
        rng = np.random.default_rng(int(a["seed"]))
        C, K, ks = int(a["C"]), int(a["K"]), int(a.get("ksize", "3"))
        shape, roi = ints(a["shape"]), ints(a["roi"])
        mirror = [] if a.get("mirror", "none") == "none" else ints(a["mirror"])
        image = rng.standard_normal([C] + shape).astype(np.float32)
        weights = (rng.standard_normal((K, C, ks, ks, ks)) * 0.3).astype(np.float32)
        bias = rng.standard_normal(K).astype(np.float32)
        pos = (rng.standard_normal(K) * 2 * int(a.get("pos", "1"))).astype(np.float32)
        predict = predictor(weights.astype(np.float64), bias.astype(np.float64), pos.astype(np.float64), roi)
        logits, steps, weight = sliding_window(image.astype(np.float64), predict, roi, float(a["overlap"]),
                                               a.get("blend", "gaussian"), mirror, a.get("pad", "constant"), K,
                                               float(a.get("sigma", "0.125")))
        if a.get("output", "probabilities") == "probabilities":
            e = np.exp(logits - logits.max(axis=0, keepdims=True))
            logits = e / e.sum(axis=0, keepdims=True)
        image.tofile(out / f"{name}.image")
        np.concatenate([weights.ravel(), bias, pos]).astype(np.float32).tofile(out / f"{name}.params")
        weight.astype(np.float32).tofile(out / f"{name}.gauss")
        logits.astype(np.float32).tofile(out / f"{name}.out")
        (out / f"{name}.steps").write_text("\n".join(" ".join(str(s) for s in axis) for axis in steps) + "\n")


if __name__ == "__main__":
    main()
