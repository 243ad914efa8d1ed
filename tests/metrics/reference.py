"""Golden values for tests/metrics, computed independently with SciPy and NumPy.

Usage: reference.py DIR SEED D H W K SD SH SW. Writes into DIR:
  ref.u8, pred.u8   label maps [D,H,W] (uint8) of K classes: smoothed random blobs, the
                    prediction a perturbed copy of the reference;
  prob.f32          softmax probabilities [K,D,H,W] (float32) close to the prediction;
  edt.f64           distance_transform_edt(ref > 0, sampling=spacing) (float64);
  expected.txt      one line per value, `METRIC CLASS VALUE`: dice, iou (nnU-Net's
                    definitions), hd95/assd with 6- and 26-connected erosion (MONAI's
                    definitions: surfaces = mask ^ binary_erosion(mask), distances from
                    distance_transform_edt(~other_surface, sampling=spacing)), hd100 (classic
                    Hausdorff), soft_dice (MedicalSeg's compute_per_channel_dice).
Classes absent from the reference or the prediction get no distance lines.
"""
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage


def blobs(rng, shape, k):
    fields = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) for _ in range(k)])
    fields[0] += 0.12  # background dominates, every class still appears
    return fields


def surfaces(mask, connectivity):
    structure = ndimage.generate_binary_structure(3, connectivity)
    return mask ^ ndimage.binary_erosion(mask, structure=structure)


def main():
    out = Path(sys.argv[1])
    seed, d, h, w, k = (int(v) for v in sys.argv[2:7])
    spacing = [float(v) for v in sys.argv[7:10]]
    rng = np.random.default_rng(seed)
    shape = (d, h, w)
    fields = blobs(rng, shape, k)
    ref = np.argmax(fields, axis=0).astype(np.uint8)
    noisy = fields + 0.2 * np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 1.0) for _ in range(k)])
    pred = np.argmax(noisy, axis=0).astype(np.uint8)
    logits = 40.0 * noisy
    prob = np.exp(logits - logits.max(axis=0, keepdims=True))
    prob = (prob / prob.sum(axis=0, keepdims=True)).astype(np.float32)

    ref.tofile(out / "ref.u8")
    pred.tofile(out / "pred.u8")
    prob.tofile(out / "prob.f32")
    ndimage.distance_transform_edt(ref > 0, sampling=spacing).astype(np.float64).tofile(out / "edt.f64")

    lines = []
    for c in range(k):
        p, g = pred == c, ref == c
        tp, fp, fn = int((p & g).sum()), int((p & ~g).sum()), int((~p & g).sum())
        if tp + fp + fn:
            lines.append(f"dice {c} {2 * tp / (2 * tp + fp + fn)!r}")
            lines.append(f"iou {c} {tp / (tp + fp + fn)!r}")
        if not p.any() or not g.any():
            continue
        for connectivity, tag in ((1, ""), (3, "_full")):
            sp, sg = surfaces(p, connectivity), surfaces(g, connectivity)
            pred_to_ref = ndimage.distance_transform_edt(~sg, sampling=spacing)[sp]
            ref_to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)[sg]
            hd95 = max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95))
            assd = np.concatenate([pred_to_ref, ref_to_pred]).mean()
            lines.append(f"hd95{tag} {c} {float(hd95)!r}")
            lines.append(f"assd{tag} {c} {float(assd)!r}")
            if connectivity == 1:
                lines.append(f"hd100 {c} {float(max(pred_to_ref.max(), ref_to_pred.max()))!r}")
    # MedicalSeg: flatten to [C, N*D*H*W], 2 * sum(p g) / clip(sum(p^2) + sum(g^2), 1e-6).
    onehot = np.stack([(ref == c) for c in range(k)]).astype(np.float32).reshape(k, -1)
    p = prob.reshape(k, -1).astype(np.float64)
    soft = 2 * (p * onehot).sum(-1) / np.clip((p * p).sum(-1) + (onehot * onehot).sum(-1), 1e-6, None)
    for c in range(k):
        lines.append(f"soft_dice {c} {float(soft[c])!r}")
    (out / "expected.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
