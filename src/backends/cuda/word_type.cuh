// The element-size dispatch of the kernels that move whole elements without reading them
// (crops, pads, flips, permutations): any element type is copied as the unsigned word of its
// size, so one kernel per size serves every dtype. Shared by augment.cu and preprocess.cu.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "medseg/core/error.hpp"

namespace medseg::cuda::detail {

/// Calls f(E{}) with E the unsigned word of `bytes` (1, 2, 4 or 8); other sizes throw,
/// naming `where`.
template <class F>
void with_word_type(std::size_t bytes, const char* where, F&& f) {
  switch (bytes) {
    case 1: f(std::uint8_t{}); return;
    case 2: f(std::uint16_t{}); return;
    case 4: f(std::uint32_t{}); return;
    case 8: f(std::uint64_t{}); return;
    default:
      throw Error{{.where = where, .field = "element size", .expected = "1, 2, 4 or 8 bytes",
                   .actual = std::to_string(bytes)}};
  }
}

}  // namespace medseg::cuda::detail
