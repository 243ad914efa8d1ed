// Everything in core/: tensors, dtypes, layouts, the CPU backend, the thread pool, the RNG.
#pragma once

#include "core/adapt.hpp"
#include "core/backend.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/float16.hpp"
#include "core/parallel.hpp"
#include "core/print.hpp"
#include "core/random.hpp"
#include "core/rng.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
#include "version.hpp"
