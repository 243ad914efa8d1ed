"""Reference values for tests/loss: logits, labels, loss and d loss / d logits from PyTorch.

Run as `/usr/bin/python3 loss_reference.py OUT.safetensors`. Every case stores its options as
JSON in the metadata ("case.NAME"), so the C++ tests build the same loss from the file and
never repeat the list. Dice follows MONAI's DiceLoss formula, written out in torch; the
cross-entropies are torch.nn.functional's own; autograd gives every reference gradient.
Computed in float64 from float32 inputs, stored as float32.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import safetensors_lite  # noqa: E402

torch.manual_seed(0)
tensors, meta = {}, {}


def make_labels(n, c, spatial, kind, binary=False):
    """Index labels of dtype `kind` ([N,1,...] for int64, [N,...] otherwise) or one-hot float."""
    high = 2 if binary else c
    idx = torch.randint(0, high, (n, *spatial))
    if kind == "onehot":
        if binary:
            return idx.unsqueeze(1).float(), idx.unsqueeze(1).double()
        oh = F.one_hot(idx, c).movedim(-1, 1).float()
        return oh, oh.double()
    dtype = {"int64": torch.int64, "int32": torch.int32, "uint8": torch.uint8}[kind]
    stored = idx.unsqueeze(1).to(dtype) if kind == "int64" else idx.to(dtype)
    dense = idx.unsqueeze(1).double() if binary else F.one_hot(idx, c).movedim(-1, 1).double()
    return stored, dense


def dice_ref(x, g, o):
    act = o["activation"]
    p = torch.softmax(x, 1) if act == "softmax" else torch.sigmoid(x) if act == "sigmoid" else x
    if not o["include_background"]:
        p, g = p[:, 1:], g[:, 1:]
    dims = tuple(range(2, x.dim()))
    if o["batch"]:
        dims = (0,) + dims
    inter = (p * g).sum(dims)
    den = (p * p).sum(dims) + (g * g).sum(dims) if o["squared_denominator"] else p.sum(dims) + g.sum(dims)
    f = 1 - (2 * inter + o["smooth_numerator"]) / (den + o["smooth_denominator"])
    if o["class_weights"]:
        f = f * torch.tensor(o["class_weights"], dtype=torch.float64)
    return f.mean()


def ce_ref(x, y, o):
    w = torch.tensor(o["class_weights"], dtype=torch.float64) if o["class_weights"] else None
    return F.cross_entropy(x, y, weight=w, ignore_index=o["ignore_index"], reduction=o["reduction"])


def bce_ref(x, t, o):
    c = x.shape[1]
    view = (1, c) + (1,) * (x.dim() - 2)
    pw = torch.tensor(o["pos_weight"], dtype=torch.float64).view(view) if o["pos_weight"] else None
    w = torch.tensor(o["class_weights"], dtype=torch.float64).view(view) if o["class_weights"] else None
    return F.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, reduction=o["reduction"])


def store(name, config, logits, labels, loss, grad):
    meta["case." + name] = json.dumps(config)
    tensors[name + ".logits"] = logits
    tensors[name + ".labels"] = labels
    tensors[name + ".loss"] = loss.detach().float().reshape(1)
    tensors[name + ".grad"] = grad.float()


def dice_options(**kw):
    o = dict(activation="softmax", include_background=True, squared_denominator=False, smooth_numerator=1e-5,
             smooth_denominator=1e-5, batch=False, class_weights=[])
    o.update(kw)
    return o


def run(name, config, logits, labels_stored, loss_fn):
    x = logits.double().requires_grad_(True)
    loss = loss_fn(x)
    loss.backward()
    store(name, config, logits, labels_stored, loss, x.grad)


# --- Dice: every option, several label forms ---------------------------------------------
dice_cases = [
    (dice_options(), "int64", (2, 3, 4, 5, 6)),
    (dice_options(include_background=False), "uint8", (2, 3, 4, 5, 6)),
    (dice_options(squared_denominator=True), "int32", (2, 4, 3, 4, 5)),
    (dice_options(smooth_numerator=0.0, smooth_denominator=1.0), "onehot", (2, 3, 4, 4, 4)),
    (dice_options(smooth_numerator=1.0, smooth_denominator=1.0, batch=True), "int64", (3, 3, 4, 5, 6)),
    (dice_options(batch=True, include_background=False, class_weights=[0.5, 2.0]), "int64", (2, 3, 5, 4, 3)),
    (dice_options(class_weights=[0.2, 1.0, 3.0]), "onehot", (2, 3, 4, 5, 6)),
    (dice_options(activation="sigmoid"), "onehot", (2, 3, 4, 5, 6)),
    (dice_options(activation="sigmoid", include_background=False, squared_denominator=True), "int64", (2, 3, 4, 4, 5)),
    (dice_options(activation="sigmoid", batch=True), "binary-uint8", (2, 1, 6, 5, 4)),
    (dice_options(activation="none", squared_denominator=True, batch=True), "int64", (2, 3, 4, 5, 6)),
    (dice_options(), "int64", (2, 4, 7, 9)),                  # 2-D images, [N,C,H,W]
    (dice_options(batch=True), "uint8", (1, 2, 48, 48, 2)),  # more than one spatial block
]
for i, (o, kind, shape) in enumerate(dice_cases):
    n, c, spatial = shape[0], shape[1], shape[2:]
    binary = kind.startswith("binary-")
    stored, dense = make_labels(n, c, spatial, kind.replace("binary-", ""), binary)
    logits = torch.randn(shape) * 2
    if o["activation"] == "none":
        logits = torch.softmax(logits, 1)
    run(f"dice{i}", dict(o, kind="dice"), logits, stored, lambda x: dice_ref(x, dense, o))

# --- CrossEntropy: weights, ignore_index, sum, probability targets ----------------------
ce_cases = [
    (dict(class_weights=[], ignore_index=-100, reduction="mean"), "int64", (2, 3, 4, 5, 6), None),
    (dict(class_weights=[0.3, 1.0, 2.5], ignore_index=-100, reduction="mean"), "uint8", (2, 3, 4, 5, 6), None),
    (dict(class_weights=[0.3, 1.0, 2.5, 1.5], ignore_index=255, reduction="mean"), "int64", (2, 4, 3, 4, 5), 255),
    (dict(class_weights=[], ignore_index=0, reduction="sum"), "int32", (2, 3, 4, 5, 6), None),
    (dict(class_weights=[], ignore_index=-100, reduction="mean"), "onehot", (2, 3, 4, 5, 6), None),
    (dict(class_weights=[2.0, 0.5, 1.0], ignore_index=-100, reduction="sum"), "soft", (2, 3, 4, 4, 4), None),
    (dict(class_weights=[], ignore_index=-100, reduction="mean"), "int64", (2, 5, 8, 8), None),
    (dict(class_weights=[], ignore_index=-100, reduction="mean"), "int64", (1, 2, 40, 40, 3), None),
]
for i, (o, kind, shape, ignore) in enumerate(ce_cases):
    n, c, spatial = shape[0], shape[1], shape[2:]
    logits = torch.randn(shape) * 3
    if kind == "soft":
        stored = torch.softmax(torch.randn(shape), 1)
        target = stored.double()
    else:
        stored, _ = make_labels(n, c, spatial, kind)
        if ignore is not None:  # sprinkle ignored voxels
            mask = torch.rand((n, 1, *spatial)) < 0.2
            stored = stored.masked_fill(mask, ignore)
        target = stored.double() if kind == "onehot" else stored.long().reshape(n, *spatial)
    run(f"ce{i}", dict(o, kind="ce"), logits, stored, lambda x: ce_ref(x, target, o))

# --- BinaryCrossEntropy: pos_weight, channel weights, masks ------------------------------
bce_cases = [
    (dict(pos_weight=[], class_weights=[], reduction="mean"), "float", (2, 3, 4, 5, 6)),
    (dict(pos_weight=[3.0, 0.5, 1.0], class_weights=[], reduction="mean"), "float", (2, 3, 4, 5, 6)),
    (dict(pos_weight=[2.0], class_weights=[0.7], reduction="sum"), "binary-int64", (2, 1, 5, 4, 6)),
    (dict(pos_weight=[1.5, 4.0], class_weights=[1.0, 0.25], reduction="mean"), "int64", (2, 2, 4, 4, 4)),
]
for i, (o, kind, shape) in enumerate(bce_cases):
    n, c, spatial = shape[0], shape[1], shape[2:]
    logits = torch.randn(shape) * 3
    if kind == "float":
        stored = (torch.rand(shape) < 0.4).float()
        target = stored.double()
    else:
        stored, target = make_labels(n, c, spatial, kind.replace("binary-", ""), kind.startswith("binary-"))
    run(f"bce{i}", dict(o, kind="bce"), logits, stored, lambda x: bce_ref(x, target, o))

# --- Mixed: weighted CE + Dice (MedicalSeg MixedLoss, MONAI DiceCE) ----------------------
mixed_cases = [
    (dice_options(), dict(class_weights=[], ignore_index=-100, reduction="mean"), [1.0, 1.0], "int64"),
    (dice_options(include_background=False, batch=True), dict(class_weights=[1.0, 2.0, 0.5], ignore_index=-100,
                                                              reduction="mean"), [0.4, 1.7], "uint8"),
]
for i, (do, co, w, kind) in enumerate(mixed_cases):
    shape = (2, 3, 4, 5, 6)
    stored, dense = make_labels(2, 3, shape[2:], kind)
    index = stored.long().reshape(2, *shape[2:])
    logits = torch.randn(shape) * 2
    run(f"mixed{i}", dict(kind="mixed", dice=do, ce=co, weights=w), logits, stored,
        lambda x: w[0] * dice_ref(x, dense, do) + w[1] * ce_ref(x, index, co))

# --- Deep supervision over three scales with DiceCE --------------------------------------
do = dice_options(include_background=False, batch=True)
co = dict(class_weights=[], ignore_index=-100, reduction="mean")
shapes = [(2, 3, 8, 8, 8), (2, 3, 4, 4, 4), (2, 3, 2, 2, 2)]
weights = [1 / 2 ** i for i in range(len(shapes))]
weights[-1] = 0
weights = [v / sum(weights) for v in weights]
xs = [(torch.randn(s) * 2).double().requires_grad_(True) for s in shapes]
total = 0
for j, s in enumerate(shapes):
    stored, dense = make_labels(2, 3, s[2:], "int64")
    tensors[f"deep0.labels.{j}"] = stored
    tensors[f"deep0.logits.{j}"] = xs[j].detach().float()
    index = stored.reshape(2, *s[2:])
    total = total + weights[j] * (dice_ref(xs[j], dense, do) + ce_ref(xs[j], index, co))
total.backward()
for j in range(len(shapes)):
    tensors[f"deep0.grad.{j}"] = xs[j].grad.float()
tensors["deep0.loss"] = total.detach().float().reshape(1)
meta["case.deep0"] = json.dumps(dict(kind="deep", dice=do, ce=co, scales=len(shapes), weights=weights))

out = sys.argv[1]
tmp = f"{out}.{os.getpid()}.tmp"  # test processes may race to create the file: each writes
safetensors_lite.save(tmp, tensors, meta)  # its own and renames it atomically
os.replace(tmp, out)
