// Online augmentation: every transform of include/medseg/transforms/, composed with `|`.
#pragma once

#include "transforms/bias_field.hpp"
#include "transforms/box.hpp"
#include "transforms/concepts.hpp"
#include "transforms/crop.hpp"
#include "transforms/filter.hpp"
#include "transforms/flip.hpp"
#include "transforms/intensity.hpp"
#include "transforms/low_resolution.hpp"
#include "transforms/presets.hpp"
#include "transforms/rotate.hpp"
#include "transforms/spatial.hpp"
