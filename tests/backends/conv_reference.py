"""PyTorch reference for tests/backends/conv3d_test.cpp.

Usage: conv_reference.py DIR. Reads DIR/cases.txt, one convolution per line:
  name batch cin cout D H W kD kH kW sD sH sW pD pH pW dD dH dW opD opH opW groups transposed bias
and writes, per case, raw little-endian float32 files DIR/<name>.<tensor>.bin for the inputs
(x, w, b, dy: seeded normal draws) and PyTorch's results (y, dx, dw, db). The reference runs
in float64 so that the tolerance measures our error alone. Run with Debian's /usr/bin/python3.
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


def save(path, t):
    t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(path)


def run_case(out, fields, seed):
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
    x64, w64, b64 = (t.double().requires_grad_() for t in (x, w, b))
    if transposed:
        y = F.conv_transpose3d(x64, w64, b64 if bias else None, stride, padding, output_padding, groups, dilation)
    else:
        y = F.conv3d(x64, w64, b64 if bias else None, stride, padding, dilation, groups)
    dy = torch.randn(y.shape, generator=gen)
    y.backward(dy.double())
    for key, t in {"x": x, "w": w, "b": b, "dy": dy, "y": y, "dx": x64.grad, "dw": w64.grad}.items():
        save(out / f"{name}.{key}.bin", t)
    if bias:
        save(out / f"{name}.db.bin", b64.grad)


def main():
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    lines = [l.split() for l in (out / "cases.txt").read_text().splitlines() if l.strip()]
    for seed, fields in enumerate(lines):
        run_case(out, fields, seed)


if __name__ == "__main__":
    main()
