// VNet (MedicalSeg) in one include: models::VNet<B> and its options.
#pragma once

#include "models/vnet.hpp"
