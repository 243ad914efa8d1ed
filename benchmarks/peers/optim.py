"""Peer of `medseg bench optim`: torch.optim steps and clip_grad_norm_ over the same
parameter shapes (an nnU-Net-sized 3D UNet's convs, biases and norm affines).

Usage: optim.py quick|full REPEATS THREADS. Prints one JSON object of median milliseconds.
"""
import json
import sys
import time

import torch


def median_ms(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def shapes(quick):
    features = [4, 8] if quick else [32, 64, 128, 256, 320, 320]
    out = []
    for side in range(2):
        cin = 1 if side == 0 else features[-1]
        for f in features:
            for conv in range(2):
                out += [(f, cin if conv == 0 else f, 3, 3, 3), (f,), (f,), (f,)]
            cin = f
    return out


def main():
    quick, repeats, threads = sys.argv[1] == "quick", int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    params = []
    for s in shapes(quick):
        p = torch.randn(s).requires_grad_(True)
        p.grad = torch.randn(s)
        params.append(p)
    sgd = torch.optim.SGD(params, lr=1e-9, momentum=0.99, nesterov=True, weight_decay=3e-5)
    sgd.step()
    adam = torch.optim.Adam(params, lr=1e-9)
    adamw = torch.optim.AdamW(params, lr=1e-9)
    out = {
        "peer": f"torch {torch.__version__} (torch.optim defaults)",
        "sgd": median_ms(sgd.step, repeats),
        "adam": median_ms(adam.step, repeats),
        "adamw": median_ms(adamw.step, repeats),
        "clip": median_ms(lambda: torch.nn.utils.clip_grad_norm_(params, 1e30), repeats),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
