"""Reference trajectories for tests/optim: torch.optim over 20 steps with fixed gradients.

Run as `/usr/bin/python3 optim_reference.py OUT.safetensors`. Three parameters start from
stored values; at step t every parameter gets the stored gradient grad.J[t]; each case runs
its optimizer (and clip_grad_norm_, and a schedule) and stores the parameters after every
step (traj.J, shape [20, ...]) and the lr each step used. The case's options are JSON in the
metadata ("case.NAME") so the C++ test builds the same optimizer from the file.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import safetensors_lite  # noqa: E402

torch.manual_seed(0)
STEPS = 20
shapes = [(4, 3, 3), (5,), (2, 2, 2, 3)]
init = [torch.randn(s) for s in shapes]
grads = [torch.randn((STEPS,) + s) * (0.5 + j) for j, s in enumerate(shapes)]
tensors = {f"init.{j}": init[j] for j in range(len(shapes))}
tensors.update({f"grad.{j}": grads[j] for j in range(len(shapes))})
meta = {}
sched = torch.optim.lr_scheduler

cases = [
    dict(opt="sgd", lr=0.1, schedule=dict(kind="constant")),
    dict(opt="sgd", lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2,
         schedule=dict(kind="step", step_size=5, gamma=0.5)),
    dict(opt="sgd", lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5,
         schedule=dict(kind="poly", total_iters=20, power=0.9)),
    dict(opt="sgd", lr=0.02, momentum=0.9, weight_decay=1e-1, no_decay=[1],
         schedule=dict(kind="poly", total_iters=16, power=0.9, end_lr=1e-3)),
    dict(opt="adam", lr=1e-2, schedule=dict(kind="cosine", total_iters=20, eta_min=1e-4)),
    dict(opt="adam", lr=2e-2, weight_decay=1e-2, amsgrad=True,
         schedule=dict(kind="warmup", iters=5, start_factor=0.1, after=dict(kind="cosine", total_iters=15, eta_min=0))),
    dict(opt="adamw", lr=1e-2, weight_decay=5e-2, no_decay=[1],
         schedule=dict(kind="warmup", iters=4, start_factor=0.25, after=dict(kind="poly", total_iters=16, power=0.9))),
    dict(opt="adamw", lr=3e-2, beta1=0.8, beta2=0.99, eps=1e-6, amsgrad=True, clip=0.5,
         schedule=dict(kind="step", step_size=3, gamma=0.7)),
    dict(opt="sgd", lr=0.1, momentum=0.9, clip=1.0, clip_norm_type="inf",
         schedule=dict(kind="warmup", iters=3, start_factor=0.5, after=dict(kind="constant"))),
]


def make_schedule(opt, s):
    k = s["kind"]
    if k == "constant":
        return sched.LambdaLR(opt, lambda t: 1.0)
    if k == "step":
        return sched.StepLR(opt, s["step_size"], s["gamma"])
    if k == "cosine":
        return sched.CosineAnnealingLR(opt, s["total_iters"], s["eta_min"])
    if k == "poly":
        if s.get("end_lr", 0) == 0:
            return sched.PolynomialLR(opt, s["total_iters"], s["power"])
        base = opt.param_groups[0]["lr"]
        end = s["end_lr"]  # Paddle's PolynomialDecay with end_lr, as a factor of the base
        return sched.LambdaLR(opt, lambda t: ((base - end) * (1 - min(t, s["total_iters"]) / s["total_iters"]) **
                                              s["power"] + end) / base)
    if k == "warmup":
        first = sched.LinearLR(opt, s["start_factor"], 1.0, s["iters"])
        return sched.SequentialLR(opt, [first, make_schedule(opt, s["after"])], [s["iters"]])
    raise ValueError(k)


for i, c in enumerate(cases):
    params = [p.clone().requires_grad_(True) for p in init]
    no_decay = c.get("no_decay", [])
    wd = c.get("weight_decay", 0.0)
    groups = [dict(params=[p for j, p in enumerate(params) if j not in no_decay], weight_decay=wd)]
    if no_decay:
        groups.append(dict(params=[params[j] for j in no_decay], weight_decay=0.0))
    if c["opt"] == "sgd":
        opt = torch.optim.SGD(groups, lr=c["lr"], momentum=c.get("momentum", 0.0), dampening=c.get("dampening", 0.0),
                              nesterov=c.get("nesterov", False))
    else:
        cls = torch.optim.Adam if c["opt"] == "adam" else torch.optim.AdamW
        opt = cls(groups, lr=c["lr"], betas=(c.get("beta1", 0.9), c.get("beta2", 0.999)), eps=c.get("eps", 1e-8),
                  amsgrad=c.get("amsgrad", False))
    # LambdaLR/SequentialLR read base lrs from every group: keep both groups' lr equal.
    scheduler = make_schedule(opt, c["schedule"])
    traj = [[] for _ in shapes]
    lrs, norms = [], []
    for t in range(STEPS):
        for j, p in enumerate(params):
            p.grad = grads[j][t].clone()
        if "clip" in c:
            norm_type = math.inf if c.get("clip_norm_type") == "inf" else 2.0
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, c["clip"], norm_type)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
        for j, p in enumerate(params):
            traj[j].append(p.detach().clone())
    name = f"case{i}"
    meta["case." + name] = json.dumps(c)
    for j in range(len(shapes)):
        tensors[f"{name}.traj.{j}"] = torch.stack(traj[j])
    tensors[f"{name}.lr"] = torch.tensor(lrs, dtype=torch.float64)
    if norms:
        tensors[f"{name}.norm"] = torch.tensor(norms, dtype=torch.float64)

# clip_grad_norm_ alone: 2-norm, 3-norm, inf-norm, with and without clipping.
for k, (norm_type, max_norm) in enumerate([(2.0, 1.0), (3.0, 2.5), (math.inf, 0.3), (2.0, 1e6)]):
    gs = [torch.randn(s) for s in shapes]
    params = [torch.zeros(s, requires_grad=True) for s in shapes]
    for p, g in zip(params, gs):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    meta[f"clip.{k}"] = json.dumps(dict(norm_type="inf" if math.isinf(norm_type) else norm_type, max_norm=max_norm))
    for j in range(len(shapes)):
        tensors[f"clip{k}.grad.{j}"] = gs[j]
        tensors[f"clip{k}.clipped.{j}"] = params[j].grad
    tensors[f"clip{k}.total"] = torch.tensor([float(total)], dtype=torch.float64)

out = sys.argv[1]
tmp = f"{out}.{os.getpid()}.tmp"  # test processes may race to create the file: each writes
safetensors_lite.save(tmp, tensors, meta)  # its own and renames it atomically
os.replace(tmp, out)
