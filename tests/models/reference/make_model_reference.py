"""Whole-model references for medseg's model parity tests (tests/models/).

Usage: /usr/bin/python3 make_model_reference.py OUTDIR
For every case it writes OUTDIR/<case>.weights.safetensors (the model's state_dict) and
OUTDIR/<case>.io.safetensors: "input", "output.<i>" (one per returned output, highest
resolution first), "grad_output.<i>", "grad_input", "grad.<parameter>", "after.<buffer>" and
"parameter_count". Weights and input are drawn in float32; the references are computed in
float64 from them, so the comparison measures medseg's float32 error alone. Dropout is set to
p = 0 in training cases, since masks are drawn differently on each side.
"""
import os
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import safetensors_lite  # noqa: E402
from dynamic_unet import PlainConvUNet, ResidualEncoderUNet  # noqa: E402
from unet3d import UNet  # noqa: E402
from vnet import VNet  # noqa: E402
from vnet_deep_supervision import VNetDeepSup  # noqa: E402

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)


def randomize(model):
    """Non-trivial norm affines, PReLU slopes and running statistics, so every gradient counts."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm3d)) and module.weight is not None:
                module.weight.copy_(torch.rand_like(module.weight) + 0.5)
                module.bias.copy_(torch.randn_like(module.bias) * 0.5)
            if isinstance(module, nn.BatchNorm3d):
                module.running_mean.copy_(torch.randn_like(module.running_mean) * 0.3)
                module.running_var.copy_(torch.rand_like(module.running_var) + 0.5)
            if isinstance(module, nn.PReLU):
                module.weight.copy_(torch.rand_like(module.weight) * 0.5)
            if isinstance(module, nn.Dropout3d):
                module.p = 0.0


def case(name, model, shape, train):
    randomize(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    safetensors_lite.save(os.path.join(OUT, name + ".weights.safetensors"), state)
    x32 = torch.randn(*shape)
    model = model.double()
    model.train(train)
    x = x32.double().requires_grad_(True)
    y = model(x)
    outputs = list(y) if isinstance(y, (list, tuple)) else [y]
    out = {"input": x32, "parameter_count": torch.tensor([sum(p.numel() for p in model.parameters())], dtype=torch.int64)}
    grads = []
    for i, o in enumerate(outputs):
        out["output.%d" % i] = o.detach().float()
        g = torch.randn(o.shape)
        out["grad_output.%d" % i] = g
        grads.append(g.double())
    if train:
        torch.autograd.backward(outputs, grads)
        out["grad_input"] = x.grad.float()
        for pname, p in model.named_parameters():
            # A head that did not run (seg_layers below the top without deep supervision) gets none.
            out["grad." + pname] = p.grad.float() if p.grad is not None else torch.zeros(p.shape)
    for bname, b in model.named_buffers():
        out["after." + bname] = b.detach().float() if b.is_floating_point() else b.detach()
    safetensors_lite.save(os.path.join(OUT, name + ".io.safetensors"), out)


# VNet at width 4 (MedicalSeg's 16 has 45.6 M parameters), 32^3 (four 2x down-samplings).
case("vnet_batch_eval", VNet(in_channels=1, num_classes=3, norm="batch", width=4), (1, 1, 32, 32, 32), train=False)
case("vnet_batch_train", VNet(in_channels=1, num_classes=3, norm="batch", width=4), (2, 1, 16, 16, 16), train=True)
case("vnet_group_elu_train", VNet(in_channels=2, num_classes=2, elu=True, norm="group", width=4), (1, 2, 16, 16, 16), train=True)
# MedicalSeg's spine config: anisotropic down-sampling, kernel 2x2x4 / stride 2x2x1 on the
# deeper levels (D, H, W order here).
case("vnet_instance_aniso_train",
     VNet(in_channels=1, num_classes=2, norm="instance", width=4,
          down_kernels=((2, 2, 2), (2, 2, 2), (2, 2, 4), (2, 2, 4)), down_strides=((2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1))),
     (1, 1, 32, 32, 32), train=True)

# nnU-Net's PlainConvUNet, 4 stages 8-16-32-64, anisotropic first stage (kernel 1x3x3,
# stride 1x1x1 then 1x2x2), deep supervision returning three outputs.
dyn = dict(in_channels=1, features=[8, 16, 32, 64], kernels=[[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
           strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[2, 2, 2, 2], num_classes=3,
           n_conv_per_stage_decoder=[2, 2, 2])
case("dynamic_unet_ds_train", PlainConvUNet(**dyn, deep_supervision=True), (2, 1, 8, 16, 16), train=True)
case("dynamic_unet_eval", PlainConvUNet(**dyn, deep_supervision=False), (1, 1, 8, 16, 16), train=False)
case("dynamic_unet_train", PlainConvUNet(in_channels=2, features=[4, 8, 16], kernels=[[3, 3, 3]] * 3,
                                         strides=[[1, 1, 1], [2, 2, 2], [2, 2, 1]], n_conv_per_stage=[1, 2, 3],
                                         num_classes=2, n_conv_per_stage_decoder=[1, 2], deep_supervision=False),
     (1, 2, 8, 8, 8), train=True)
# nnU-Net's ResEnc U-Net: stem, BasicBlockD stages (skips with avg-pool and 1x1 conv), the
# plain decoder; stage 1 keeps its channels to exercise the pool-only skip.
case("resenc_unet_ds_train", ResidualEncoderUNet(in_channels=1, features=[4, 4, 8], kernels=[[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                                                 strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]], n_blocks_per_stage=[1, 2, 2],
                                                 num_classes=2, n_conv_per_stage_decoder=[1, 1], deep_supervision=True),
     (2, 1, 4, 8, 8), train=True)

# VNetDeepSup: heads on up_tr64/128/256; MedicalSeg's spine down-sampling (kernel 2x2x4,
# stride 2x2x1: W shrinks by 3 there) so that the heads' up-sampling factors are not integers.
case("vnet_deepsup_train",
     VNetDeepSup(in_channels=1, num_classes=3, norm="group", width=4,
                 down_kernels=((2, 2, 2), (2, 2, 2), (2, 2, 4), (2, 2, 4)), down_strides=((2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1))),
     (1, 1, 16, 16, 32), train=True)
case("vnet_deepsup_eval", VNetDeepSup(in_channels=1, num_classes=2, norm="batch", width=4), (1, 1, 16, 16, 16), train=False)

# MONAI's UNet: plain (num_res_units=0, the top up layer conv-only), residual units with
# BatchNorm and per-axis strides, one residual unit with GroupNorm, LeakyReLU and an
# anisotropic kernel, and ReLU in eval mode.
case("unet3d_plain_train", UNet(1, 3, channels=(4, 8, 16), strides=(2, 2)), (2, 1, 16, 16, 16), train=True)
case("unet3d_res2_train", UNet(2, 2, channels=(4, 8, 16, 16), strides=((2, 2, 2), (1, 2, 2), (2, 2, 2)), num_res_units=2,
                               norm="batch"), (2, 2, 8, 16, 16), train=True)
case("unet3d_res1_group_train", UNet(1, 2, channels=(4, 8, 8), strides=((1, 2, 2), 2), kernel_size=(1, 3, 3), num_res_units=1,
                                     norm="group", num_groups=2, act="leakyrelu"), (1, 1, 4, 8, 8), train=True)
case("unet3d_relu_eval", UNet(1, 2, channels=(4, 8, 16), strides=(2, 2), norm="batch", act="relu"), (1, 1, 8, 8, 8),
     train=False)
