"""PyTorch reference for tests/backends/cpu_conv3d_test.cpp and cpu_math_mode_test.cpp.

Usage: conv_reference.py DIR [bf16]. Reads DIR/cases.txt, one convolution per line:
  name batch cin cout D H W kD kH kW sD sH sW pD pH pW dD dH dW opD opH opW groups transposed bias
and writes, per case, raw little-endian float32 files DIR/<name>.<tensor>.bin for the inputs
(x, w, b, dy: seeded normal draws) and PyTorch's results (y, dx, dw, db). The reference runs
in float64 so that the tolerance measures our error alone. Run with Debian's /usr/bin/python3.

With `bf16`, for bfloat16 autocast, two more sets per case:
  <tensor>_rounded: the float64 results from x, w and dy rounded to bfloat16 (b as it is): what
      bfloat16 operands with exact accumulation give, so what medseg's autocast convolutions
      should match to float32 accumulation error.
  <tensor>_autocast: PyTorch's own torch.autocast("cpu", dtype=torch.bfloat16) results (y and
      dx rounded to bfloat16 by PyTorch, gradients cast back to float32). Not for transposed
      cases: PyTorch 1.13's CPU autocast leaves conv_transpose3d in float32, and its bfloat16
      conv_transpose3d fails ("expected input ... to have 16 channels").
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


def save(path, t):
    t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(path)


def bf16(t):
    """t rounded to bfloat16 (to nearest even, as oneDNN's reorders round), back in float64."""
    return t.to(torch.bfloat16).double()


def convolve(x, w, b, transposed, stride, padding, output_padding, groups, dilation):
    if transposed:
        return F.conv_transpose3d(x, w, b, stride, padding, output_padding, groups, dilation)
    return F.conv3d(x, w, b, stride, padding, dilation, groups)


def grads(y, dy, inputs):
    y.backward(dy)
    return [t.grad for t in inputs]


def run_case(out, fields, seed, with_bf16):
    name = fields[0]
    n, cin, cout = map(int, fields[1:4])
    size = tuple(map(int, fields[4:7]))
    kernel, stride, padding, dilation, output_padding = (tuple(map(int, fields[7 + 3 * i:10 + 3 * i]))
                                                         for i in range(5))
    groups, transposed, bias = int(fields[22]), fields[23] == "1", fields[24] == "1"
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, cin) + size, generator=gen)
    wshape = (cin, cout // groups) + kernel if transposed else (cout, cin // groups) + kernel
    w = torch.randn(wshape, generator=gen) * 0.2
    b = torch.randn(cout, generator=gen)
    geometry = (transposed, stride, padding, output_padding, groups, dilation)
    x64, w64, b64 = (t.double().requires_grad_() for t in (x, w, b))
    y = convolve(x64, w64, b64 if bias else None, *geometry)
    dy = torch.randn(y.shape, generator=gen)
    y.backward(dy.double())
    for key, t in {"x": x, "w": w, "b": b, "dy": dy, "y": y, "dx": x64.grad, "dw": w64.grad}.items():
        save(out / f"{name}.{key}.bin", t)
    if bias:
        save(out / f"{name}.db.bin", b64.grad)
    if not with_bf16:
        return

    xr, wr, br = bf16(x).requires_grad_(), bf16(w).requires_grad_(), b.double().requires_grad_()
    yr = convolve(xr, wr, br if bias else None, *geometry)
    dxr, dwr, dbr = grads(yr, bf16(dy), (xr, wr, br))
    results = {"y": yr, "dx": dxr, "dw": dwr, "db": dbr if bias else None}
    for key, t in results.items():
        if t is not None:
            save(out / f"{name}.{key}_rounded.bin", t)
    if transposed:
        return

    xa, wa, ba = (t.clone().requires_grad_() for t in (x, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = convolve(xa, wa, ba if bias else None, *geometry)
    if ya.dtype != torch.bfloat16:
        raise SystemExit(f"{name}: torch.autocast left the convolution in {ya.dtype}")
    dxa, dwa, dba = grads(ya, dy.to(ya.dtype), (xa, wa, ba))
    results = {"y": ya, "dx": dxa, "dw": dwa, "db": dba if bias else None}
    for key, t in results.items():
        if t is not None:
            save(out / f"{name}.{key}_autocast.bin", t)


def main():
    out = Path(sys.argv[1])
    with_bf16 = sys.argv[2:] == ["bf16"]
    torch.set_num_threads(1)
    lines = [l.split() for l in (out / "cases.txt").read_text().splitlines() if l.strip()]
    for seed, fields in enumerate(lines):
        run_case(out, fields, seed, with_bf16)


if __name__ == "__main__":
    main()
