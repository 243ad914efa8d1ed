"""Reference outputs and gradients of torch.nn layers for medseg's layer parity tests.

Usage: /usr/bin/python3 make_layer_reference.py OUTDIR
For every case it writes OUTDIR/<case>.weights.safetensors (the module's state_dict, as
medseg's load_state_dict reads it) and OUTDIR/<case>.io.safetensors: "input", "output",
"grad_output", "grad_input", "grad.<parameter>" and, after the forward, "after.<buffer>".
Inputs and weights are drawn in float32; the references are computed in float64 from them,
so the comparison measures medseg's float32 error alone.
"""
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import safetensors_lite  # noqa: E402

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)


def randomize(module):
    """Non-trivial affine weights, slopes and running statistics, so every gradient counts."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.dim() == 1:
                p.copy_(torch.rand_like(p) + 0.5)
            elif name.endswith("bias") and p.dim() == 1 and not isinstance(module, (nn.Conv3d, nn.ConvTranspose3d, nn.Linear)):
                p.copy_(torch.randn_like(p) * 0.5)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)


def case(name, module, shape, train=True, scale=1.0, randomize_params=True):
    if randomize_params:
        randomize(module)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    safetensors_lite.save(os.path.join(OUT, name + ".weights.safetensors"), state)
    x32 = torch.randn(*shape) * scale
    module = module.double()
    module.train(train)
    x = x32.double().requires_grad_(True)
    y = module(x)
    dy = torch.randn(y.shape)
    out = {"input": x32, "output": y.detach().float(), "grad_output": dy}
    if train:
        y.backward(dy.double())
        out["grad_input"] = x.grad.float()
        for pname, p in module.named_parameters():
            out["grad." + pname] = p.grad.float()
    for bname, b in module.named_buffers():
        out["after." + bname] = b.detach().float() if b.is_floating_point() else b.detach()
    safetensors_lite.save(os.path.join(OUT, name + ".io.safetensors"), out)


class ChannelsLayerNorm(nn.Module):
    """LayerNorm over axis 1 of NCDHW (ConvNeXt's channels_first)."""

    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 4, 1), (x.shape[1],), self.weight, self.bias, self.eps).permute(0, 4, 1, 2, 3)


class Softmax1(nn.Module):
    def forward(self, x):
        return torch.softmax(x, 1)


class Upsample(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, x):
        return F.interpolate(x, mode="trilinear", **self.kw)


class Residual(nn.Module):
    def __init__(self, body, projection=None):
        super().__init__()
        self.body = body
        if projection is not None:
            self.projection = projection

    def forward(self, x):
        return self.body(x) + (self.projection(x) if hasattr(self, "projection") else x)


class ConcatSkip(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


class Level(nn.Module):
    """One U-Net level: e = encoder(x); decoder(cat(up(inner(down(e))), e))."""

    def __init__(self, encoder, down, inner, up, decoder):
        super().__init__()
        self.encoder, self.down, self.inner, self.up, self.decoder = encoder, down, inner, up, decoder

    def forward(self, x):
        e = self.encoder(x)
        return self.decoder(torch.cat([self.up(self.inner(self.down(e))), e], 1))


def conv_norm_act(cin, cout):
    return nn.Sequential(OrderedDict(conv=nn.Conv3d(cin, cout, 3, padding=1), norm=nn.GroupNorm(2, cout),
                                     nonlin=nn.PReLU()))


# Convolutions
case("conv_basic", nn.Conv3d(3, 4, 3, padding=1), (2, 3, 6, 6, 6))
case("conv_aniso", nn.Conv3d(4, 6, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), (1, 4, 5, 8, 7))
case("conv_k224", nn.Conv3d(2, 4, (2, 2, 4), stride=2, bias=False), (1, 2, 6, 6, 8))
case("conv_dilated_groups", nn.Conv3d(4, 8, 3, padding=2, dilation=2, groups=2), (1, 4, 7, 6, 5))
case("convt_basic", nn.ConvTranspose3d(4, 2, 2, stride=2), (1, 4, 3, 3, 3))
case("convt_output_padding", nn.ConvTranspose3d(3, 4, 3, stride=2, padding=1, output_padding=1), (2, 3, 3, 4, 3))
case("convt_groups", nn.ConvTranspose3d(4, 6, (1, 2, 2), stride=(1, 2, 2), groups=2, bias=False), (1, 4, 2, 3, 3))
case("linear_basic", nn.Linear(5, 7), (3, 5))
case("linear_tokens", nn.Linear(6, 4, bias=False), (2, 5, 6))
# Norms
case("bn_train", nn.BatchNorm3d(3), (2, 3, 4, 4, 4), scale=2.0)
case("bn_momentum_noaffine", nn.BatchNorm3d(2, momentum=0.3, affine=False, eps=1e-3), (3, 2, 3, 2, 4))
case("bn_eval", nn.BatchNorm3d(3), (2, 3, 3, 3, 3), train=False)
case("gn_basic", nn.GroupNorm(2, 6), (2, 6, 3, 4, 5))
case("gn_one_group", nn.GroupNorm(1, 4), (1, 4, 3, 3, 3))
case("gn_noaffine", nn.GroupNorm(4, 4, affine=False, eps=1e-3), (2, 4, 2, 3, 3))
case("in_affine", nn.InstanceNorm3d(3, affine=True), (2, 3, 4, 4, 4))
case("in_plain", nn.InstanceNorm3d(2), (1, 2, 3, 4, 5))
case("in_running", nn.InstanceNorm3d(2, affine=True, track_running_stats=True), (2, 2, 3, 3, 3))
case("in_running_eval", nn.InstanceNorm3d(2, affine=True, track_running_stats=True), (2, 2, 3, 3, 3), train=False)
case("ln_last", nn.LayerNorm(6), (2, 5, 6))
case("ln_noaffine", nn.LayerNorm(4, elementwise_affine=False), (3, 4))
case("ln_channels", ChannelsLayerNorm(5), (2, 5, 3, 2, 4))
# Activations
act_shape = (2, 3, 4, 4, 4)
case("relu", nn.ReLU(), act_shape)
case("leaky_relu", nn.LeakyReLU(0.1), act_shape)
case("prelu_shared", nn.PReLU(), act_shape)
case("prelu_channels", nn.PReLU(3, init=0.1), act_shape)
case("elu", nn.ELU(0.7), act_shape, scale=2.0)
case("gelu", nn.GELU(), act_shape, scale=2.0)
case("sigmoid", nn.Sigmoid(), act_shape, scale=3.0)
case("softmax", Softmax1(), act_shape, scale=3.0)
case("relu_tokens", nn.ReLU(), (4, 7))
case("leaky_relu_default", nn.LeakyReLU(), (3, 2, 5))
case("elu_default", nn.ELU(), (2, 2, 3, 3, 3), scale=3.0)
case("gelu_tokens", nn.GELU(), (4, 6), scale=3.0)
case("sigmoid_tokens", nn.Sigmoid(), (5, 3), scale=5.0)
case("softmax_tokens", Softmax1(), (3, 5, 7), scale=3.0)
case("prelu_tokens", nn.PReLU(5, init=0.3), (4, 5))
# Pooling and resizing
case("maxpool_2", nn.MaxPool3d(2), (2, 3, 4, 6, 4))
case("maxpool_k3s2p1", nn.MaxPool3d(3, stride=2, padding=1), (1, 2, 5, 6, 7))
case("maxpool_aniso", nn.MaxPool3d((1, 2, 2)), (1, 2, 3, 4, 6))
case("avgpool_2", nn.AvgPool3d(2), (2, 3, 4, 6, 4))
case("avgpool_k3s2p1", nn.AvgPool3d(3, stride=2, padding=1), (1, 2, 5, 6, 7))
case("avgpool_exclude_pad", nn.AvgPool3d(3, stride=2, padding=1, count_include_pad=False), (1, 2, 5, 6, 7))
case("upsample_x2", Upsample(scale_factor=2, align_corners=False), (1, 2, 3, 4, 5))
case("upsample_x2_corners", Upsample(scale_factor=2, align_corners=True), (1, 2, 3, 4, 5))
case("upsample_size", Upsample(size=(5, 7, 6), align_corners=False), (2, 1, 3, 4, 5))
case("upsample_aniso", Upsample(scale_factor=(1, 2, 2), align_corners=False), (1, 2, 3, 3, 4))
# Composition
case("seq_conv_norm_act", conv_norm_act(2, 4), (2, 2, 4, 4, 4))
case("residual_two_blocks", Residual(nn.Sequential(conv_norm_act(4, 4), conv_norm_act(4, 4))), (1, 4, 4, 4, 4))
case("residual_projection", Residual(conv_norm_act(2, 4), nn.Conv3d(2, 4, 1)), (1, 2, 4, 4, 4))
case("concat_skip", ConcatSkip(conv_norm_act(2, 4)), (1, 2, 4, 4, 4))
inner_level = Level(conv_norm_act(4, 8), nn.MaxPool3d(2), conv_norm_act(8, 8),
                    nn.ConvTranspose3d(8, 8, 2, stride=2), conv_norm_act(16, 4))
case("unet_two_levels", Level(conv_norm_act(1, 4), nn.Conv3d(4, 4, 2, stride=2), inner_level,
                              nn.ConvTranspose3d(4, 4, 2, stride=2), conv_norm_act(8, 2)), (1, 1, 8, 8, 8))
print("wrote layer references to", OUT)
