// The dataset fingerprint: per-case spacing and cropped shape, foreground samples, and the
// dataset's foreground statistics against values worked out by hand (numpy's definitions).
#include <catch2/catch.hpp>

#include "medseg/preprocess/fingerprint.hpp"

using namespace medseg;
using namespace medseg::preprocess;

namespace {

/// A [4,5,6] image whose nonzero box is [1:3, 1:4, 2:5] and whose label marks values 1..n.
std::pair<io::Image<float>, io::Image<std::uint8_t>> make_case(float offset, double z_spacing) {
  io::Image<float> image{Tensor<float>::zeros({4, 5, 6}), {}};
  io::Image<std::uint8_t> label{Tensor<std::uint8_t>::zeros({4, 5, 6}), {}};
  image.geometry.spacing = {1.0, 1.0, z_spacing};
  float v = 1;
  for (int d = 1; d < 3; ++d)
    for (int h = 1; h < 4; ++h)
      for (int w = 2; w < 5; ++w) {
        image.voxels.at(d, h, w) = offset + v;
        if (h == 2) label.voxels.at(d, h, w) = 1;
        v += 1;
      }
  return {image, label};
}

}  // namespace

TEST_CASE("fingerprint_case crops and samples the foreground") {
  auto [image, label] = make_case(0, 2.5);
  const auto f = fingerprint_case(image, &label);
  CHECK(f.shape == Extent3{4, 5, 6});
  CHECK(f.shape_after_crop == Extent3{2, 3, 3});
  CHECK(f.spacing[2] == 2.5);
  // label row h == 2 in both slices: values 4..6 and 13..15
  CHECK(f.foreground_samples == std::vector<float>{4, 5, 6, 13, 14, 15});
  const auto capped = fingerprint_case(image, &label, 3);
  CHECK(capped.foreground_samples == std::vector<float>{4, 6, 14});
  const auto no_label = fingerprint_case<float, std::uint8_t>(image, nullptr);
  CHECK(no_label.foreground_samples.size() == 120);
}

TEST_CASE("summarize_fingerprints gives nnU-Net's dataset statistics") {
  auto [a, la] = make_case(0, 2.0);
  auto [b, lb] = make_case(100, 3.0);
  auto [c, lc] = make_case(0, 5.0);
  const auto d = summarize_fingerprints({fingerprint_case(a, &la), fingerprint_case(b, &lb), fingerprint_case(c, &lc)});
  // samples: 4 5 6 13 14 15 (twice) and 104 105 106 113 114 115
  CHECK(d.foreground.mean == Approx((2 * 57 + 657) / 18.0));
  CHECK(d.foreground.min == 4);
  CHECK(d.foreground.max == 115);
  CHECK(d.foreground.median == Approx(14));  // numpy.median of the 18 samples: (14 + 14) / 2
  CHECK(d.foreground.percentile_00_5 == Approx(4 + 0.085 * 0));  // 0.5% of 17 = 0.085 between 4 and 4
  CHECK(d.foreground.percentile_99_5 == Approx(114 + 0.915 * 1));
  CHECK(d.median_spacing[2] == 3.0);
  CHECK(d.median_shape == Extent3{2, 3, 3});
  CHECK(d.median_relative_size_after_cropping == Approx(18.0 / 120.0));
  const auto j = d.to_json();
  CHECK(j.at("foreground_intensity_properties_per_channel").at("0").at("max") == 115.0);
  CHECK(d.ct_stats().upper == Approx(114.915));
  CHECK_THROWS_WITH(summarize_fingerprints({}), Catch::Contains("at least one"));
}
