"""PyTorch reference of MONAI's configurable UNet (monai.networks.nets.UNet with spatial_dims=3,
adn_ordering="NDA"), written in torch alone (MONAI is not installed) with MONAI's module
structure, so state-dict keys are MONAI's:
model.0.conv.unit0.conv.weight, model.0.conv.unit0.adn.A.weight, model.0.residual.weight,
model.1.submodule.0..., model.2.0.conv.weight, model.2.1.conv.unit0.conv.weight, ...
Pieces as MONAI builds them: Convolution = Sequential(conv, ADN(N, D, A)) (conv alone when
conv_only); ADN's dropout is nn.Dropout (Convolution's dropout_dim=1) and is present even at
p = 0; InstanceNorm3d without affine (MONAI's default), BatchNorm3d, GroupNorm(num_groups);
PReLU with one slope, ReLU, LeakyReLU(0.01). ResidualUnit = conv (unit0, unit1, ...) + residual
(identity, or a conv: kernel and padding as the units when strided, 1x1x1 when only the
channels change). Transposed convs use padding (k - 1) / 2 and output_padding stride - 1.
"""
import numpy as np
import torch
import torch.nn as nn


def _tuple(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v, v)


def _same_padding(k):
    return tuple((kk - 1) // 2 for kk in _tuple(k))


class ADN(nn.Sequential):
    def __init__(self, channels, act, norm, num_groups, dropout):
        super().__init__()
        if norm == "instance":
            self.add_module("N", nn.InstanceNorm3d(channels))
        elif norm == "batch":
            self.add_module("N", nn.BatchNorm3d(channels))
        elif norm == "group":
            self.add_module("N", nn.GroupNorm(num_groups=num_groups, num_channels=channels))
        else:
            raise ValueError(norm)
        self.add_module("D", nn.Dropout(p=float(dropout)))
        if act == "prelu":
            self.add_module("A", nn.PReLU())
        elif act == "relu":
            self.add_module("A", nn.ReLU())
        elif act == "leakyrelu":
            self.add_module("A", nn.LeakyReLU())
        else:
            raise ValueError(act)


class Convolution(nn.Sequential):
    def __init__(self, cin, cout, strides, kernel_size, act, norm, num_groups, dropout, bias, conv_only=False,
                 is_transposed=False):
        super().__init__()
        padding = _same_padding(kernel_size)
        if is_transposed:
            output_padding = tuple(s - 1 for s in _tuple(strides))
            conv = nn.ConvTranspose3d(cin, cout, kernel_size=_tuple(kernel_size), stride=_tuple(strides), padding=padding,
                                      output_padding=output_padding, bias=bias)
        else:
            conv = nn.Conv3d(cin, cout, kernel_size=_tuple(kernel_size), stride=_tuple(strides), padding=padding, bias=bias)
        self.add_module("conv", conv)
        if not conv_only:
            self.add_module("adn", ADN(cout, act, norm, num_groups, dropout))


class ResidualUnit(nn.Module):
    def __init__(self, cin, cout, strides, kernel_size, subunits, act, norm, num_groups, dropout, bias,
                 last_conv_only=False):
        super().__init__()
        self.conv = nn.Sequential()
        self.residual = nn.Identity()
        padding = _same_padding(kernel_size)
        schannels, sstrides = cin, strides
        subunits = max(1, subunits)
        for su in range(subunits):
            conv_only = last_conv_only and su == subunits - 1
            self.conv.add_module("unit%d" % su, Convolution(schannels, cout, sstrides, kernel_size, act, norm, num_groups,
                                                            dropout, bias, conv_only=conv_only))
            schannels, sstrides = cout, 1
        if np.prod(_tuple(strides)) != 1 or cin != cout:
            rkernel, rpadding = _tuple(kernel_size), padding
            if np.prod(_tuple(strides)) == 1:
                rkernel, rpadding = 1, 0
            self.residual = nn.Conv3d(cin, cout, rkernel, _tuple(strides), rpadding, bias=bias)

    def forward(self, x):
        return self.conv(x) + self.residual(x)


class SkipConnection(nn.Module):
    def __init__(self, submodule):
        super().__init__()
        self.submodule = submodule

    def forward(self, x):
        return torch.cat([x, self.submodule(x)], dim=1)


class UNet(nn.Module):
    def __init__(self, in_channels, out_channels, channels, strides, kernel_size=3, up_kernel_size=3, num_res_units=0,
                 act="prelu", norm="instance", num_groups=8, dropout=0.0, bias=True):
        super().__init__()
        assert len(strides) == len(channels) - 1
        opts = dict(act=act, norm=norm, num_groups=num_groups, dropout=dropout, bias=bias)

        def down(cin, cout, s):
            if num_res_units > 0:
                return ResidualUnit(cin, cout, s, kernel_size, num_res_units, **opts)
            return Convolution(cin, cout, s, kernel_size, **opts)

        def up(cin, cout, s, is_top):
            conv = Convolution(cin, cout, s, up_kernel_size, conv_only=is_top and num_res_units == 0, is_transposed=True,
                               **opts)
            if num_res_units > 0:
                ru = ResidualUnit(cout, cout, 1, kernel_size, 1, last_conv_only=is_top, **opts)
                return nn.Sequential(conv, ru)
            return conv

        def block(inc, outc, ch, st, is_top):
            c, s = ch[0], st[0]
            if len(ch) > 2:
                sub = block(c, c, ch[1:], st[1:], False)
                upc = 2 * c
            else:
                sub = down(c, ch[1], 1)
                upc = c + ch[1]
            return nn.Sequential(down(inc, c, s), SkipConnection(sub), up(upc, outc, s, is_top))

        self.model = block(in_channels, out_channels, list(channels), list(strides), True)

    def forward(self, x):
        return self.model(x)
