// MONAI's configurable 3-D UNet in one include: models::UNet3D<B> and its options.
#pragma once

#include "models/unet3d.hpp"
