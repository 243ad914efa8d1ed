"""Peer of `medseg bench sliding_window`: nnU-Net v2's sliding-window loop in PyTorch
(nnunetv2/inference/predict_from_raw_data.py: compute_steps_for_sliding_window,
compute_gaussian, predict_sliding_window_return_logits with
_internal_maybe_mirror_and_predict), on the CPU, float32, with the pointwise predictor
logits[k] = 0.5 (k + 1) x + (k - 1).

Usage: sliding_window.py SHAPE ROI REPEATS THREADS, SHAPE as "[1,128,160,144]" ([C,D,H,W]).
Prints one JSON object of median milliseconds per case.
"""
import itertools
import json
import os
import sys
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

# nnU-Net's window placement, as the tests' reference has it (one copy in the repository).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "infer"))
from reference import steps_for as compute_steps_for_sliding_window  # noqa: E402


def median_ms(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def compute_gaussian(tile_size, sigma_scale=1.0 / 8):
    tmp = np.zeros(tile_size)
    tmp[tuple(i // 2 for i in tile_size)] = 1
    g = gaussian_filter(tmp, [i * sigma_scale for i in tile_size], 0, mode="constant", cval=0)
    g = torch.from_numpy(g)
    g = g / torch.max(g)
    g = g.to(dtype=torch.float32)
    mask = g == 0
    g[mask] = torch.min(g[~mask])
    return g


def main():
    shape = [int(v) for v in sys.argv[1].strip("[]").split(",")]
    roi = [int(sys.argv[2])] * 3
    repeats, threads = int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    k_out = 3
    a = torch.tensor([0.5 * (k + 1) for k in range(k_out)]).view(1, k_out, 1, 1, 1)
    c = torch.tensor([float(k - 1) for k in range(k_out)]).view(1, k_out, 1, 1, 1)
    network = lambda x: a * x + c  # noqa: E731
    data = torch.randn(shape)
    gaussian = compute_gaussian(roi)

    def maybe_mirror_and_predict(x, mirror_axes):
        prediction = network(x)
        if mirror_axes is not None:
            axes = [m + 2 for m in mirror_axes]
            combos = [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
            for ax in combos:
                prediction += torch.flip(network(torch.flip(x, ax)), ax)
            prediction /= len(combos) + 1
        return prediction

    def run(mirror_axes):
        with torch.no_grad():
            steps = compute_steps_for_sliding_window(shape[1:], roi, 0.5)
            logits = torch.zeros([k_out] + shape[1:], dtype=torch.float32)
            n_predictions = torch.zeros(shape[1:], dtype=torch.float32)
            for sx in steps[0]:
                for sy in steps[1]:
                    for sz in steps[2]:
                        sl = (slice(None), slice(sx, sx + roi[0]), slice(sy, sy + roi[1]), slice(sz, sz + roi[2]))
                        prediction = maybe_mirror_and_predict(data[sl][None], mirror_axes)[0]
                        logits[sl] += prediction * gaussian
                        n_predictions[sl[1:]] += gaussian
            logits /= n_predictions
            return torch.softmax(logits, 0)

    result = {"peer": f"torch {torch.__version__} (nnU-Net v2's loop)"}
    result["plain"] = median_ms(lambda: run(None), repeats)
    result["mirrored"] = median_ms(lambda: run((0, 1, 2)), repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
