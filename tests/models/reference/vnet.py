"""PyTorch reference of MedicalSeg's VNet (PaddleSeg contrib/MedicalSeg/medicalseg/models/vnet.py,
itself from MedicalZooPytorch), written in torch with the same module names, so that the
state-dict keys are the ones medseg's models::VNet produces:
in_tr.conv1.weight, down_tr32.down_conv.weight, down_tr64.ops.0.conv1.weight, up_tr256.up_conv.weight,
out_tr.conv2.bias, ...

Options beyond MedicalSeg's (norm, width) default to MedicalSeg's behaviour.
"""
import torch
import torch.nn as nn


def _act(elu, channels):
    return nn.ELU() if elu else nn.PReLU(channels)


def _norm(kind, channels):
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    raise ValueError(kind)


class LUConv(nn.Module):
    def __init__(self, nchan, elu, norm):
        super().__init__()
        self.relu1 = _act(elu, nchan)
        self.conv1 = nn.Conv3d(nchan, nchan, kernel_size=5, padding=2)
        self.bn1 = _norm(norm, nchan)

    def forward(self, x):
        return self.relu1(self.bn1(self.conv1(x)))


def _make_nconv(nchan, depth, elu, norm):
    return nn.Sequential(*[LUConv(nchan, elu, norm) for _ in range(depth)])


class InputTransition(nn.Module):
    def __init__(self, in_channels, out_channels, elu, norm):
        super().__init__()
        self.num_features = out_channels
        self.in_channels = in_channels
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=5, padding=2)
        self.bn1 = _norm(norm, out_channels)
        self.relu1 = _act(elu, out_channels)

    def forward(self, x):
        out = self.bn1(self.conv1(x))
        repeat = self.num_features // self.in_channels
        return self.relu1(out + x.repeat(1, repeat, 1, 1, 1))


class DownTransition(nn.Module):
    def __init__(self, in_chans, n_convs, elu, norm, dropout=False, kernel=2, stride=2):
        super().__init__()
        out_chans = 2 * in_chans
        self.if_dropout = dropout
        self.down_conv = nn.Conv3d(in_chans, out_chans, kernel_size=kernel, stride=stride)
        self.bn1 = _norm(norm, out_chans)
        self.relu1 = _act(elu, out_chans)
        self.relu2 = _act(elu, out_chans)
        self.dropout = nn.Dropout3d()
        self.ops = _make_nconv(out_chans, n_convs, elu, norm)

    def forward(self, x):
        down = self.relu1(self.bn1(self.down_conv(x)))
        out = self.dropout(down) if self.if_dropout else down
        return self.relu2(self.ops(out) + down)


class UpTransition(nn.Module):
    def __init__(self, in_chans, out_chans, n_convs, elu, norm, dropout=False, dropout2=False, kernel=2, stride=2):
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(in_chans, out_chans // 2, kernel_size=kernel, stride=stride)
        self.bn1 = _norm(norm, out_chans // 2)
        self.relu1 = _act(elu, out_chans // 2)
        self.relu2 = _act(elu, out_chans)
        self.if_dropout = dropout
        self.if_dropout2 = dropout2
        self.dropout1 = nn.Dropout3d()
        self.dropout2 = nn.Dropout3d()
        self.ops = _make_nconv(out_chans, n_convs, elu, norm)

    def forward(self, x, skipx):
        out = self.dropout1(x) if self.if_dropout else x
        skipx = self.dropout2(skipx) if self.if_dropout2 else skipx
        out = self.relu1(self.bn1(self.up_conv(out)))
        xcat = torch.cat((out, skipx), 1)
        return self.relu2(self.ops(xcat) + xcat)


class OutputTransition(nn.Module):
    def __init__(self, in_channels, num_classes, elu, norm):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, num_classes, kernel_size=5, padding=2)
        self.bn1 = _norm(norm, num_classes)
        self.conv2 = nn.Conv3d(num_classes, num_classes, kernel_size=1)
        self.relu1 = _act(elu, num_classes)

    def forward(self, x):
        return self.conv2(self.relu1(self.bn1(self.conv1(x))))


class VNet(nn.Module):
    """VNet (Milletari et al. 2016) as MedicalSeg builds it. `width` scales every channel count
    (16 at full width); `down_kernels`/`down_strides` give each of the four down/up levels its
    own (possibly anisotropic) kernel and stride, as MedicalSeg's spine config does."""

    def __init__(self, in_channels=1, num_classes=4, elu=False, norm="batch", width=16,
                 down_kernels=((2, 2, 2),) * 4, down_strides=((2, 2, 2),) * 4):
        super().__init__()
        w = width
        self.in_tr = InputTransition(in_channels, w, elu, norm)
        k, s = down_kernels, down_strides
        self.down_tr32 = DownTransition(w, 1, elu, norm, kernel=k[0], stride=s[0])
        self.down_tr64 = DownTransition(2 * w, 2, elu, norm, kernel=k[1], stride=s[1])
        self.down_tr128 = DownTransition(4 * w, 3, elu, norm, dropout=True, kernel=k[2], stride=s[2])
        self.down_tr256 = DownTransition(8 * w, 2, elu, norm, dropout=True, kernel=k[3], stride=s[3])
        self.up_tr256 = UpTransition(16 * w, 16 * w, 2, elu, norm, dropout=True, dropout2=True, kernel=k[3], stride=s[3])
        self.up_tr128 = UpTransition(16 * w, 8 * w, 2, elu, norm, dropout=True, dropout2=True, kernel=k[2], stride=s[2])
        self.up_tr64 = UpTransition(8 * w, 4 * w, 1, elu, norm, kernel=k[1], stride=s[1])
        self.up_tr32 = UpTransition(4 * w, 2 * w, 1, elu, norm, kernel=k[0], stride=s[0])
        self.out_tr = OutputTransition(2 * w, num_classes, elu, norm)

    def forward(self, x):
        out16 = self.in_tr(x)
        out32 = self.down_tr32(out16)
        out64 = self.down_tr64(out32)
        out128 = self.down_tr128(out64)
        out256 = self.down_tr256(out128)
        out = self.up_tr256(out256, out128)
        out = self.up_tr128(out, out64)
        out = self.up_tr64(out, out32)
        out = self.up_tr32(out, out16)
        return self.out_tr(out)


if __name__ == "__main__":
    net = VNet(in_channels=1, num_classes=3)
    print(sum(p.numel() for p in net.parameters()), "parameters")
    y = net(torch.randn(1, 1, 32, 32, 32))
    print(tuple(y.shape))
