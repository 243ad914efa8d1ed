// Everything in viz/: 8-bit pictures and their drawing operations with a built-in 5x7 font,
// PNG in and out (libpng), slice overlays of segmentations in radiological orientation, and
// line charts of training curves.
#pragma once

#include "viz/font.hpp"
#include "viz/overlay.hpp"
#include "viz/plot.hpp"
#include "viz/png.hpp"
#include "viz/raster.hpp"
