"""Peer of `medseg bench train` and `medseg bench infer`: the same models in PyTorch.

Usage: train.py MODE MODEL BATCH SIZE CLASSES THREADS WARMUP REPEATS [DEVICE [PRECISION]]
  MODE    train (forward, Dice + CE, backward, SGD step) or infer (eval-mode forward, no_grad)
  MODEL   dynamic_unet (nnU-Net's PlainConvUNet 32-64-128-256, deep supervision in training)
          or vnet (MedicalSeg's VNet, width 16)
  DEVICE  cpu (default) or cuda; PRECISION fp32 (default), tf32 (TF32 tensor cores for
          convolutions and matrix products) or, on the CPU, bf16 (forward and loss under
          torch.autocast("cpu", dtype=torch.bfloat16), as PyTorch's AMP recipe has it). On cuda, cudnn.benchmark follows MEDSEG_CUDNN_BENCHMARK
          (medseg's switch for the same search), and "peak_mib" is torch.cuda.max_memory_allocated
          over the timed iterations.
Prints one JSON object: "ms" (median of REPEATS after WARMUP untimed iterations), "peak_mib"
(RSS high-water mark over the timed iterations minus the RSS before the model was built),
"hwm_mib" (the whole process's high-water mark over the timed iterations) and "peer". The
architectures are the parity references of tests/models/reference/, imported, not copied.
"""
import contextlib
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "models", "reference"))
from dynamic_unet import PlainConvUNet  # noqa: E402
from vnet import VNet  # noqa: E402


def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def reset_high_water_mark():
    """VmHWM restarts from the current RSS (Linux >= 4.0), as the C++ side does."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def dice_loss(logits, labels, include_background, batch, smooth=1e-5):
    """medseg's loss::Dice with a softmax and a plain denominator (MONAI's / nnU-Net's soft Dice)."""
    p = torch.softmax(logits, 1)
    g = torch.zeros_like(p).scatter_(1, labels, 1.0)
    axes = (0, 2, 3, 4) if batch else (2, 3, 4)
    intersection = (p * g).sum(axes)
    denominator = p.sum(axes) + g.sum(axes)
    d = 1 - (2 * intersection + smooth) / (denominator + smooth)
    if not include_background:
        d = d[..., 1:]
    return d.mean()


def dice_ce(logits, labels, include_background, batch):
    return dice_loss(logits, labels, include_background, batch) + F.cross_entropy(logits, labels[:, 0])


def main():
    mode, model = sys.argv[1], sys.argv[2]
    batch, size, classes, threads, warmup, repeats = map(int, sys.argv[3:9])
    device = sys.argv[9] if len(sys.argv) > 9 else "cpu"
    tf32 = len(sys.argv) > 10 and sys.argv[10] == "tf32"
    bf16 = len(sys.argv) > 10 and sys.argv[10] == "bf16"
    gpu = device == "cuda"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if gpu:
        # The timed algorithm search when medseg's side does it too (MEDSEG_CUDNN_BENCHMARK=1).
        torch.backends.cudnn.benchmark = os.environ.get("MEDSEG_CUDNN_BENCHMARK") == "1"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    rss_before = status_mib("VmRSS")

    x = torch.randn(batch, 1, size, size, size, device=device)
    labels = torch.randint(0, classes, (batch, 1, size, size, size), device=device)
    if model == "dynamic_unet":
        net = PlainConvUNet(1, [32, 64, 128, 256], [[3, 3, 3]] * 4, [[1, 1, 1]] + [[2, 2, 2]] * 3, [2, 2, 2, 2],
                            classes, [2, 2, 2], deep_supervision=True)
        # nnU-Net's targets: labels nearest-downsampled to each head; weights 1, 1/2, (1/4 -> 0), normalised.
        targets = [labels, labels[:, :, ::2, ::2, ::2].contiguous(), labels[:, :, ::4, ::4, ::4].contiguous()]
        weights = [1.0, 0.5, 0.0]
        weights = [w / sum(weights) for w in weights]
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)

        def loss_of(outputs):
            return sum(w * dice_ce(o, t, include_background=False, batch=True)
                       for w, o, t in zip(weights, outputs, targets) if w != 0)
    elif model == "vnet":
        net = VNet(in_channels=1, num_classes=classes, width=16)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

        def loss_of(output):
            return F.cross_entropy(output, labels[:, 0]) + dice_loss(output, labels, include_background=True, batch=False)
    else:
        raise SystemExit(f"unknown model {model}")
    net.to(device)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    if mode == "train":
        net.train()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_of(net(x))
            loss.backward()
            optimizer.step()
    elif mode == "infer":
        net.eval()
        if model == "dynamic_unet":
            net.decoder.deep_supervision = False  # as nnU-Net's predictor does

        def step():
            with torch.no_grad(), autocast():
                net(x)
    else:
        raise SystemExit(f"unknown mode {mode}")

    def synchronized_step():
        step()
        if gpu:
            torch.cuda.synchronize()

    for _ in range(warmup):
        synchronized_step()
    reset_high_water_mark()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        synchronized_step()
        times.append((time.perf_counter() - start) * 1e3)
    hwm = status_mib("VmHWM")
    if gpu:
        search = "cudnn.benchmark" if torch.backends.cudnn.benchmark else "cuDNN heuristics"
        peer = f"torch {torch.__version__.split('+')[0]} ({torch.cuda.get_device_name()}, {search})"
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peer = f"torch {torch.__version__.split('+')[0]} ({torch.get_num_threads()} threads)"
        peak = hwm - rss_before
    print(json.dumps({"peer": peer, "ms": statistics.median(times), "peak_mib": peak, "hwm_mib": hwm}))


if __name__ == "__main__":
    main()
