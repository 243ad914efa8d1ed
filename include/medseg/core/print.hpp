// Printing tensors: `os << t` gives the type and layout and, for small tensors, the values;
// summary(t) adds min, max, mean and the NaN count, computed on the host.
//   Tensor<float32,cpu> [2,3]:[3,1] {0, 1, 2, 3, 4, 5}
//   Tensor<float32,cpu> [1,1,64,64,64]:[262144,262144,4096,64,1] min=-3.1 max=2.9 mean=0.0012 nan=0
#pragma once

#include <cmath>
#include <limits>
#include <ostream>
#include <sstream>
#include <string>

#include "tensor.hpp"

namespace medseg {

template <class T, class B>
std::string type_name(const Tensor<T, B>&) {
  return "Tensor<" + std::string(name(dtype_of<T>)) + "," + std::string(B::name) + ">";
}

namespace detail {
template <class T>
double as_double(T v) {
  if constexpr (std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>)
    return static_cast<double>(static_cast<float>(v));
  else
    return static_cast<double>(v);
}
}  // namespace detail

/// Type, layout, and the values when there are at most `max_values` of them.
template <class T, class B>
std::ostream& operator<<(std::ostream& os, const Tensor<T, B>& t) {
  if (!t.defined()) return os << type_name(t) << " (undefined)";
  os << type_name(t) << " " << t.layout();
  constexpr std::int64_t max_values = 16;
  if (t.numel() <= max_values) {
    os << " {";
    const auto v = t.to_vector();
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << detail::as_double(v[i]);
    os << "}";
  }
  return os;
}

struct Summary {
  double min = 0, max = 0, mean = 0;
  std::int64_t nan_count = 0;
};

/// Statistics over the finite-or-infinite elements; NaNs are counted, not averaged.
template <class T, class B>
Summary summarize(const Tensor<T, B>& t) {
  const auto v = t.to_vector();
  Summary s{std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(), 0, 0};
  double sum = 0;
  for (const T& x : v) {
    const double d = detail::as_double(x);
    if (std::isnan(d)) {
      ++s.nan_count;
      continue;
    }
    s.min = std::min(s.min, d);
    s.max = std::max(s.max, d);
    sum += d;
  }
  const auto counted = static_cast<std::int64_t>(v.size()) - s.nan_count;
  s.mean = counted > 0 ? sum / static_cast<double>(counted) : std::nan("");
  if (counted == 0) s.min = s.max = std::nan("");
  return s;
}

/// One line: type, layout, min, max, mean, NaN count.
template <class T, class B>
std::string summary(const Tensor<T, B>& t) {
  std::ostringstream os;
  os << type_name(t) << " " << t.layout();
  if (t.defined()) {
    const Summary s = summarize(t);
    os << " min=" << s.min << " max=" << s.max << " mean=" << s.mean << " nan=" << s.nan_count;
  }
  return os.str();
}

}  // namespace medseg
