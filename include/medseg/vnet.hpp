// VNet (MedicalSeg) in one include: models::VNet<B>, models::VNetDeepSup<B> (deep
// supervision heads on the up levels) and their options.
#pragma once

#include "models/vnet.hpp"
#include "models/vnet_deep_supervision.hpp"
