"""Peer of `medseg bench conv`: the same Conv3d / ConvTranspose3d problems with PyTorch.

Usage: conv.py THREADS REPEATS CASE... where each CASE is
  name:cin:cout:size:kernel:stride:padding:transposed   (cubic sizes, e.g. a:16:16:64:5:1:2:0)
Prints one JSON object: best-of-REPEATS milliseconds per "<name> fwd" and "<name> fwd+bwd", batch 1,
float32, bias on. Forward runs under no_grad (nothing kept for backward, as ours); forward +
backward computes the input, weight and bias gradients, gradients reset to None each step as
an optimizer's zero_grad(set_to_none=True) does.
"""
import json
import sys
import time

import torch


def best_ms(f, repeats):
    """Fastest of `repeats` timed calls after one untimed warm-up, as the C++ side measures."""
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def main():
    threads, repeats = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = {"peer": f"torch {torch.__version__.split('+')[0]} ({torch.get_num_threads()} threads)"}
    for spec in sys.argv[3:]:
        name, cin, cout, size, k, s, p, transposed = spec.split(":")
        cin, cout, size, k, s, p = map(int, (cin, cout, size, k, s, p))
        layer = (torch.nn.ConvTranspose3d if transposed == "1" else torch.nn.Conv3d)(cin, cout, k, s, p)
        x = torch.randn(1, cin, size, size, size)
        with torch.no_grad():
            gy = torch.randn(layer(x).shape)

        def forward():
            with torch.no_grad():
                layer(x)

        xg = x.clone().requires_grad_()

        def forward_backward():
            xg.grad = None
            layer.zero_grad(set_to_none=True)
            layer(xg).backward(gy)

        out[f"{name} fwd"] = best_ms(forward, repeats)
        out[f"{name} fwd+bwd"] = best_ms(forward_backward, repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
