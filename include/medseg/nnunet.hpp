// nnU-Net's dynamic U-Net (PlainConvUNet) in one include: models::DynamicUNet<B> and its options.
#pragma once

#include "models/dynamic_unet.hpp"
