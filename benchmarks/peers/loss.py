"""Peer of `medseg bench loss`: the same losses, forward + backward, with PyTorch autograd.

Usage: loss.py SHAPE REPEATS THREADS, SHAPE as "[2,4,96,96,96]". Prints one JSON object of
median milliseconds per case. Dice is MONAI's formula written in torch (MONAI is not in
Debian), as in tests/loss/loss_reference.py.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def median_ms(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def dice(x, onehot):
    p = torch.softmax(x, 1)[:, 1:]
    g = onehot[:, 1:]
    dims = (0,) + tuple(range(2, x.dim()))
    inter = (p * g).sum(dims)
    den = p.sum(dims) + g.sum(dims)
    return (1 - (2 * inter + 1e-5) / (den + 1e-5)).mean()


def main():
    shape = [int(v) for v in sys.argv[1].strip("[]").split(",")]
    repeats, threads = int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(shape).requires_grad_(True)
    y = torch.randint(0, shape[1], [shape[0]] + shape[2:])
    onehot = F.one_hot(y, shape[1]).movedim(-1, 1).float()
    mask = (torch.rand(shape) < 0.33).float()

    def run(loss_fn):
        def step():
            x.grad = None
            loss_fn().backward()
        return median_ms(step, repeats)

    out = {
        "peer": f"torch {torch.__version__}",
        "ce": run(lambda: F.cross_entropy(x, y)),
        "dice": run(lambda: dice(x, F.one_hot(y, shape[1]).movedim(-1, 1).float())),
        "dice_ce": run(lambda: dice(x, F.one_hot(y, shape[1]).movedim(-1, 1).float()) + F.cross_entropy(x, y)),
        "bce": run(lambda: F.binary_cross_entropy_with_logits(x, mask)),
    }
    del onehot
    print(json.dumps(out))


if __name__ == "__main__":
    main()
