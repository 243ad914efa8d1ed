// Everything in preprocess/: resampling (scipy.ndimage.zoom's conventions, geometry-aware),
// label-map resampling (nnU-Net's per-label and anisotropic rules), intensity normalisation,
// crop/pad, label maps and connected components, the dataset fingerprint, and the
// `medseg prepare` pipeline.
#pragma once

#include "preprocess/crop.hpp"
#include "preprocess/fingerprint.hpp"
#include "preprocess/intensity.hpp"
#include "preprocess/invertible.hpp"
#include "preprocess/labels.hpp"
#include "preprocess/pipeline.hpp"
#include "preprocess/prepare.hpp"
#include "preprocess/resample.hpp"
#include "preprocess/segmentation_resample.hpp"
