"""PyTorch reference of nnU-Net's PlainConvUNet (MIC-DKFZ/dynamic-network-architectures 0.2/0.3:
architectures/unet.py, building_blocks/plain_conv_encoder.py, unet_decoder.py,
simple_conv_blocks.py), reduced to the 3-D, conv-pooling, InstanceNorm + LeakyReLU case nnU-Net
plans, with the same module names, so state-dict keys are nnU-Net's:
encoder.stages.0.0.convs.0.conv.weight, encoder.stages.0.0.convs.0.norm.weight,
decoder.transpconvs.0.weight, decoder.stages.0.convs.0.conv.weight, decoder.seg_layers.0.weight.
As upstream, ConvDropoutNormReLU also holds its modules in `all_modules`, so state_dict() lists
each of them twice (...convs.0.all_modules.0.weight aliases ...convs.0.conv.weight).
"""
import torch
import torch.nn as nn


class ConvDropoutNormReLU(nn.Module):
    def __init__(self, cin, cout, kernel, stride, conv_bias=True):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding=[(k - 1) // 2 for k in kernel], dilation=1, bias=conv_bias)
        self.norm = nn.InstanceNorm3d(cout, eps=1e-5, affine=True)
        self.nonlin = nn.LeakyReLU(negative_slope=0.01, inplace=True)
        self.all_modules = nn.Sequential(self.conv, self.norm, self.nonlin)

    def forward(self, x):
        return self.all_modules(x)


class StackedConvBlocks(nn.Module):
    def __init__(self, num_convs, cin, cout, kernel, initial_stride, conv_bias=True):
        super().__init__()
        self.convs = nn.Sequential(
            ConvDropoutNormReLU(cin, cout, kernel, initial_stride, conv_bias),
            *[ConvDropoutNormReLU(cout, cout, kernel, 1, conv_bias) for _ in range(1, num_convs)])

    def forward(self, x):
        return self.convs(x)


class PlainConvEncoder(nn.Module):
    def __init__(self, in_channels, features, kernels, strides, n_conv_per_stage, conv_bias=True):
        super().__init__()
        stages = []
        for s in range(len(features)):
            stages.append(nn.Sequential(StackedConvBlocks(n_conv_per_stage[s], in_channels, features[s], kernels[s], strides[s], conv_bias)))
            in_channels = features[s]
        self.stages = nn.Sequential(*stages)
        self.output_channels = list(features)
        self.strides = [list(s) for s in strides]
        self.kernel_sizes = kernels

    def forward(self, x):
        ret = []
        for s in self.stages:
            x = s(x)
            ret.append(x)
        return ret


class UNetDecoder(nn.Module):
    def __init__(self, encoder, num_classes, n_conv_per_stage, deep_supervision, conv_bias=True):
        super().__init__()
        self.deep_supervision = deep_supervision
        n = len(encoder.output_channels)
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, n):
            below = encoder.output_channels[-s]
            skip = encoder.output_channels[-(s + 1)]
            stride = encoder.strides[-s]
            transpconvs.append(nn.ConvTranspose3d(below, skip, stride, stride, bias=conv_bias))
            stages.append(StackedConvBlocks(n_conv_per_stage[s - 1], 2 * skip, skip, encoder.kernel_sizes[-(s + 1)], 1, conv_bias))
            seg_layers.append(nn.Conv3d(skip, num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips):
        lres_input = skips[-1]
        seg_outputs = []
        for s in range(len(self.stages)):
            x = self.transpconvs[s](lres_input)
            x = torch.cat((x, skips[-(s + 2)]), 1)
            x = self.stages[s](x)
            if self.deep_supervision:
                seg_outputs.append(self.seg_layers[s](x))
            elif s == (len(self.stages) - 1):
                seg_outputs.append(self.seg_layers[-1](x))
            lres_input = x
        seg_outputs = seg_outputs[::-1]
        return seg_outputs if self.deep_supervision else seg_outputs[0]


class PlainConvUNet(nn.Module):
    def __init__(self, in_channels, features, kernels, strides, n_conv_per_stage, num_classes,
                 n_conv_per_stage_decoder, deep_supervision=False, conv_bias=True):
        super().__init__()
        self.encoder = PlainConvEncoder(in_channels, features, kernels, strides, n_conv_per_stage, conv_bias)
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision, conv_bias)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class ConvNorm(ConvDropoutNormReLU):
    """ConvDropoutNormReLU with nonlin=None: conv and norm only (all_modules has two entries)."""

    def __init__(self, cin, cout, kernel, stride, conv_bias=True):
        nn.Module.__init__(self)
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding=[(k - 1) // 2 for k in kernel], dilation=1, bias=conv_bias)
        self.norm = nn.InstanceNorm3d(cout, eps=1e-5, affine=True)
        self.all_modules = nn.Sequential(self.conv, self.norm)


class BasicBlockD(nn.Module):
    """building_blocks/residual.py's BasicBlockD (ResNet-D): avg-pool + 1x1 conv on the skip."""

    def __init__(self, cin, cout, kernel, stride, conv_bias=True):
        super().__init__()
        self.conv1 = ConvDropoutNormReLU(cin, cout, kernel, stride, conv_bias)
        self.conv2 = ConvNorm(cout, cout, kernel, [1, 1, 1], conv_bias)
        self.nonlin2 = nn.LeakyReLU(negative_slope=0.01, inplace=True)
        has_stride = any(i != 1 for i in stride)
        if has_stride or cin != cout:
            ops = []
            if has_stride:
                ops.append(nn.AvgPool3d(stride, stride))
            if cin != cout:
                ops.append(ConvNorm(cin, cout, [1, 1, 1], [1, 1, 1], False))
            self.skip = nn.Sequential(*ops)
        else:
            self.skip = nn.Identity()

    def forward(self, x):
        residual = self.skip(x)
        out = self.conv2(self.conv1(x))
        out += residual
        return self.nonlin2(out)


class StackedResidualBlocks(nn.Module):
    def __init__(self, n_blocks, cin, cout, kernel, initial_stride, conv_bias=True):
        super().__init__()
        self.blocks = nn.Sequential(BasicBlockD(cin, cout, kernel, initial_stride, conv_bias),
                                    *[BasicBlockD(cout, cout, kernel, [1, 1, 1], conv_bias) for _ in range(1, n_blocks)])

    def forward(self, x):
        return self.blocks(x)


class ResidualEncoder(nn.Module):
    """building_blocks/residual_encoders.py with the default stem and strided-conv pooling."""

    def __init__(self, in_channels, features, kernels, strides, n_blocks_per_stage, conv_bias=True):
        super().__init__()
        self.stem = StackedConvBlocks(1, in_channels, features[0], kernels[0], [1, 1, 1], conv_bias)
        in_channels = features[0]
        stages = []
        for s in range(len(features)):
            stages.append(StackedResidualBlocks(n_blocks_per_stage[s], in_channels, features[s], kernels[s], strides[s], conv_bias))
            in_channels = features[s]
        self.stages = nn.Sequential(*stages)
        self.output_channels = list(features)
        self.strides = [list(s) for s in strides]
        self.kernel_sizes = kernels

    def forward(self, x):
        x = self.stem(x)
        ret = []
        for s in self.stages:
            x = s(x)
            ret.append(x)
        return ret


class ResidualEncoderUNet(nn.Module):
    """architectures/unet.py's ResidualEncoderUNet (nnU-Net ResEnc presets) with BasicBlockD."""

    def __init__(self, in_channels, features, kernels, strides, n_blocks_per_stage, num_classes,
                 n_conv_per_stage_decoder, deep_supervision=False, conv_bias=True):
        super().__init__()
        self.encoder = ResidualEncoder(in_channels, features, kernels, strides, n_blocks_per_stage, conv_bias)
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision, conv_bias)

    def forward(self, x):
        return self.decoder(self.encoder(x))
