"""Golden values for tests/transforms: SciPy / PyTorch compute what our kernels must match.

Usage: reference.py DIR. Reads DIR/cases.txt, one case a line: NAME OP key=value ...
and writes DIR/NAME.in.raw (+ NAME.label.raw) and DIR/NAME.out.raw (+ NAME.label_*.raw),
float32 / uint8, C order. Inputs are made here from the case's seed so both sides agree.

  gauss   shape=C,D,H,W sigma=a,b,c seed=N          scipy.ndimage.gaussian_filter per channel
  affine  shape=C,D,H,W out=d,h,w matrix=9 values offset=3 values seed=N
          image: scipy.ndimage.affine_transform(order=1, mode='grid-constant', cval=0)
          label (ids 0..3): order 0, and per-class one-hot order 1 then argmax
  resize  shape=C,D,H,W out=d,h,w seed=N            torch interpolate nearest-exact, trilinear
  bias    shape=1,D,H,W degree=N coefficients=...    MONAI RandBiasField's log field: numpy's
          legval3d on linspace(-1, 1) axes, coefficient (i,j,k) in i, j, k order, i+j+k <= degree
"""
import os
import sys

import numpy as np
import scipy.ndimage as ndi


def floats(text):
    return [float(v) for v in text.split(",")]


def ints(text):
    return [int(v) for v in text.split(",")]


def main():
    out_dir = sys.argv[1]
    with open(os.path.join(out_dir, "cases.txt")) as f:
        lines = [line.split() for line in f if line.strip()]
    for parts in lines:
        name, op = parts[0], parts[1]
        args = dict(p.split("=", 1) for p in parts[2:])
        rng = np.random.default_rng(int(args.get("seed", "0")))
        path = lambda suffix: os.path.join(out_dir, f"{name}.{suffix}.raw")
        shape = ints(args["shape"])
        x = rng.standard_normal(shape).astype(np.float32)
        x.tofile(path("in"))
        if op == "gauss":
            sigma = floats(args["sigma"])
            y = np.stack([ndi.gaussian_filter(x[c].astype(np.float64), sigma, mode="reflect", truncate=4.0)
                          for c in range(shape[0])]).astype(np.float32)
            y.tofile(path("out"))
        elif op == "affine":
            out = ints(args["out"])
            m = np.array(floats(args["matrix"])).reshape(3, 3)
            off = np.array(floats(args["offset"]))
            y = np.stack([ndi.affine_transform(x[c].astype(np.float64), m, off, output_shape=out, order=1,
                                               mode="grid-constant", cval=0.0) for c in range(shape[0])])
            y.astype(np.float32).tofile(path("out"))
            # A label of blobs: smoothed noise quantised to ids 0..3, so classes form regions.
            smooth = ndi.gaussian_filter(rng.standard_normal(shape[1:]), 2.0)
            label = np.digitize(smooth, np.quantile(smooth, [0.4, 0.65, 0.85])).astype(np.uint8)
            label.tofile(path("label"))
            nearest = ndi.affine_transform(label, m, off, output_shape=out, order=0, mode="grid-constant", cval=0)
            nearest.astype(np.uint8).tofile(path("label_nearest"))
            onehot = np.stack([ndi.affine_transform((label == k).astype(np.float64), m, off, output_shape=out,
                                                    order=1, mode="grid-constant", cval=0.0) for k in range(4)])
            # Outside the volume the one-hot of class 0 is 1 (the fill id is 0).
            inside = ndi.affine_transform(np.ones(shape[1:]), m, off, output_shape=out, order=1,
                                          mode="grid-constant", cval=0.0)
            onehot[0] += 1.0 - inside
            np.argmax(onehot, axis=0).astype(np.uint8).tofile(path("label_linear"))
        elif op == "resize":
            import torch
            out = ints(args["out"])
            t = torch.from_numpy(x)[None]
            torch.nn.functional.interpolate(t, size=out, mode="nearest-exact")[0].numpy().tofile(path("nearest"))
            torch.nn.functional.interpolate(t, size=out, mode="trilinear", align_corners=False)[0].numpy().tofile(
                path("trilinear"))
        elif op == "bias":
            degree = int(args["degree"])
            coefficients = iter(floats(args["coefficients"]))
            mat = np.zeros((degree + 1,) * 3)
            for i in range(degree + 1):
                for j in range(degree + 1 - i):
                    for k in range(degree + 1 - i - j):
                        mat[i, j, k] = next(coefficients)
            axes = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape[1:]], indexing="ij")
            np.polynomial.legendre.legval3d(*axes, mat).astype(np.float32).tofile(path("out"))
        else:
            raise SystemExit(f"reference.py: unknown op {op!r} in case {name}")


if __name__ == "__main__":
    main()
