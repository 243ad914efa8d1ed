"""PyTorch reference of VNetDeepSup: MedicalSeg's VNet (vnet.py here) with a 1x1x1 conv head on
each of the up_tr256, up_tr128 and up_tr64 outputs, trilinearly up-sampled (align_corners=False)
to the input's size. Head names are deep_sup256, deep_sup128, deep_sup64 (PaddleSeg's style of
naming a module after its level). In training, forward returns
[main, deep_sup64, deep_sup128, deep_sup256]; in eval, main alone.
"""
import torch.nn as nn
import torch.nn.functional as F

from vnet import VNet


class VNetDeepSup(VNet):
    def __init__(self, in_channels=1, num_classes=4, width=16, **kwargs):
        super().__init__(in_channels=in_channels, num_classes=num_classes, width=width, **kwargs)
        w = width
        self.deep_sup256 = nn.Conv3d(16 * w, num_classes, kernel_size=1)
        self.deep_sup128 = nn.Conv3d(8 * w, num_classes, kernel_size=1)
        self.deep_sup64 = nn.Conv3d(4 * w, num_classes, kernel_size=1)

    def forward(self, x):
        out16 = self.in_tr(x)
        out32 = self.down_tr32(out16)
        out64 = self.down_tr64(out32)
        out128 = self.down_tr128(out64)
        out256 = self.down_tr256(out128)
        up256 = self.up_tr256(out256, out128)
        up128 = self.up_tr128(up256, out64)
        up64 = self.up_tr64(up128, out32)
        main = self.out_tr(self.up_tr32(up64, out16))
        if not self.training:
            return main
        size = x.shape[2:]

        def head(conv, t):
            return F.interpolate(conv(t), size=size, mode="trilinear", align_corners=False)

        return [main, head(self.deep_sup64, up64), head(self.deep_sup128, up128), head(self.deep_sup256, up256)]
