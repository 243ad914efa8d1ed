// The NumPy reference of sliding-window inference (reference.py, run with Debian's
// /usr/bin/python3) and the predictor both sides implement: a fixed 3-D convolution plus a
// term that depends on the position inside the window, so window placement matters.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "medseg/core/tensor.hpp"

namespace infer_test {

namespace fs = std::filesystem;

/// logits[n,k] = bias[k] + sum_c correlate(x[n,c], w[k,c], zero outside the window)
///             + pos[k] * (z/d - 0.5 y/h + 0.25 x/w) over the window's own coordinates.
struct ConvPredictor {
  std::int64_t C = 1, K = 1, ks = 3;
  std::vector<float> weights, bias, pos;  // [K,C,ks,ks,ks], [K], [K]
  std::int64_t* calls = nullptr;          // counts invocations when set

  medseg::Tensor<float> operator()(const medseg::Tensor<float>& x) const {
    if (calls) ++*calls;
    const std::int64_t N = x.size(0), D = x.size(2), H = x.size(3), W = x.size(4), r = ks / 2;
    auto y = medseg::Tensor<float>::empty({N, K, D, H, W});
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t z = 0; z < D; ++z)
          for (std::int64_t v = 0; v < H; ++v)
            for (std::int64_t u = 0; u < W; ++u) {
              double acc = bias[static_cast<std::size_t>(k)] +
                           static_cast<double>(pos[static_cast<std::size_t>(k)]) *
                               (static_cast<double>(z) / static_cast<double>(D) -
                                0.5 * static_cast<double>(v) / static_cast<double>(H) +
                                0.25 * static_cast<double>(u) / static_cast<double>(W));
              for (std::int64_t c = 0; c < C; ++c)
                for (std::int64_t i = 0; i < ks; ++i)
                  for (std::int64_t j = 0; j < ks; ++j)
                    for (std::int64_t l = 0; l < ks; ++l) {
                      const std::int64_t zz = z + i - r, vv = v + j - r, uu = u + l - r;
                      if (zz < 0 || zz >= D || vv < 0 || vv >= H || uu < 0 || uu >= W) continue;
                      acc += static_cast<double>(weights[static_cast<std::size_t>((((k * C + c) * ks + i) * ks + j) * ks + l)]) *
                             static_cast<double>(x(n, c, zz, vv, uu));
                    }
              y(n, k, z, v, u) = static_cast<float>(acc);
            }
    return y;
  }
};

struct Case {
  std::string name;
  std::string line;  // "key=value ..." as reference.py reads it
};

inline fs::path make_references(const std::vector<Case>& cases, const std::string& tag) {
  const fs::path dir = fs::current_path() / ("infer_reference_" + tag + "_" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    std::ofstream list(dir / "cases.txt");
    for (const auto& c : cases) list << c.name << " " << c.line << "\n";
  }
  const std::string cmd =
      "/usr/bin/python3 " + std::string(MEDSEG_SOURCE_DIR) + "/tests/infer/reference.py " + dir.string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  return dir;
}

template <class T>
std::vector<T> read_values(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

inline medseg::Tensor<float> read_tensor(const fs::path& path, const medseg::Shape& shape) {
  const auto v = read_values<float>(path);
  REQUIRE(static_cast<std::int64_t>(v.size()) == shape.product());
  return medseg::Tensor<float>::from(std::span<const float>(v), shape);
}

inline ConvPredictor read_predictor(const fs::path& path, std::int64_t C, std::int64_t K, std::int64_t ks) {
  const auto v = read_values<float>(path);
  const auto nw = static_cast<std::size_t>(K * C * ks * ks * ks), k = static_cast<std::size_t>(K);
  REQUIRE(v.size() == nw + 2 * k);
  ConvPredictor p{C, K, ks, {v.begin(), v.begin() + static_cast<std::ptrdiff_t>(nw)}, {}, {}};
  p.bias.assign(v.begin() + static_cast<std::ptrdiff_t>(nw), v.begin() + static_cast<std::ptrdiff_t>(nw + k));
  p.pos.assign(v.begin() + static_cast<std::ptrdiff_t>(nw + k), v.end());
  return p;
}

/// The window starts of each axis, as reference.py wrote them.
inline std::vector<std::vector<std::int64_t>> read_steps(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::int64_t>> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::vector<std::int64_t> axis;
    for (std::int64_t v; s >> v;) axis.push_back(v);
    out.push_back(axis);
  }
  return out;
}

/// max |a - b|; infinity on a size mismatch or a non-finite value.
inline double max_abs_diff(const medseg::Tensor<float>& a, const medseg::Tensor<float>& b) {
  if (a.shape() != b.shape()) return INFINITY;
  double m = 0;
  const auto va = a.to_vector(), vb = b.to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) {
    if (!std::isfinite(va[i])) return INFINITY;
    m = std::max(m, std::abs(static_cast<double>(va[i]) - static_cast<double>(vb[i])));
  }
  return m;
}

}  // namespace infer_test
