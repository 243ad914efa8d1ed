// Everything in data/: the Dataset concept, the cache, and the MedicalSeg, Medical
// Segmentation Decathlon and nnU-Net v2 raw layouts.
#pragma once

#include "data/case.hpp"
#include "data/dataset.hpp"
#include "data/decathlon.hpp"
#include "data/medicalseg.hpp"
#include "data/memory_dataset.hpp"
#include "data/nnunet.hpp"
