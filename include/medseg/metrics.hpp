// Everything in metrics/: hard Dice and IoU per class, the exact anisotropic Euclidean
// distance transform, HD95 and average surface distance in mm (MONAI's definitions),
// MedicalSeg's soft Dice, and per-case results aggregated and written as CSV and JSON.
#pragma once

#include "metrics/distance_transform.hpp"
#include "metrics/overlap.hpp"
#include "metrics/report.hpp"
#include "metrics/soft_dice.hpp"
#include "metrics/surface_distance.hpp"
