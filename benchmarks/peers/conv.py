"""Peer of `medseg bench conv`: the same Conv3d / ConvTranspose3d problems with PyTorch.

Usage: conv.py THREADS REPEATS [bf16] CASE... where each CASE is
  name:cin:cout:size:kernel:stride:padding:transposed   (cubic sizes, e.g. a:16:16:64:5:1:2:0)
Prints one JSON object: best-of-REPEATS milliseconds per "<name> fwd" and "<name> fwd+bwd", batch 1,
float32, bias on. Forward runs under no_grad (nothing kept for backward, as ours); forward +
backward computes the input, weight and bias gradients, gradients reset to None each step as
an optimizer's zero_grad(set_to_none=True) does. With bf16, also "<name> bf16 fwd" and
"<name> bf16 fwd+bwd": the same steps under torch.autocast("cpu", dtype=torch.bfloat16), float32
parameters and input as medseg's autocast has them (PyTorch 1.13's CPU autocast leaves
conv_transpose3d in float32, so case f's bf16 row is PyTorch's float32 there).
"""
import contextlib
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
    specs = sys.argv[3:]
    with_bf16 = specs[:1] == ["bf16"]
    if with_bf16:
        specs = specs[1:]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = {"peer": f"torch {torch.__version__.split('+')[0]} ({torch.get_num_threads()} threads)"}
    for spec in specs:
        name, cin, cout, size, k, s, p, transposed = spec.split(":")
        cin, cout, size, k, s, p = map(int, (cin, cout, size, k, s, p))
        layer = (torch.nn.ConvTranspose3d if transposed == "1" else torch.nn.Conv3d)(cin, cout, k, s, p)
        x = torch.randn(1, cin, size, size, size)
        with torch.no_grad():
            gy = torch.randn(layer(x).shape)

        xg = x.clone().requires_grad_()
        for precision in ["", " bf16"] if with_bf16 else [""]:
            def autocast():
                if precision:
                    return torch.autocast("cpu", dtype=torch.bfloat16)
                return contextlib.nullcontext()

            def forward():
                with torch.no_grad(), autocast():
                    layer(x)

            def forward_backward():
                xg.grad = None
                layer.zero_grad(set_to_none=True)
                with autocast():
                    y = layer(xg)
                y.backward(gy.to(y.dtype))

            out[f"{name}{precision} fwd"] = best_ms(forward, repeats)
            out[f"{name}{precision} fwd+bwd"] = best_ms(forward_backward, repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
