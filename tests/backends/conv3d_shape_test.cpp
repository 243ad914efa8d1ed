// Conv3dShape: PyTorch's size formulas, weight layouts, and validation errors that name the field.
#include <catch2/catch.hpp>

#include "medseg/backends/conv3d.hpp"

using namespace medseg;

namespace {
std::string message_of(const Conv3dShape& s) {
  try {
    s.validate("layer.conv");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("Conv3dShape output sizes follow PyTorch") {
  Conv3dShape s{.in_channels = 16, .out_channels = 32, .input = {64, 64, 64}, .kernel = {2, 2, 2},
                .stride = {2, 2, 2}};
  CHECK(s.output() == std::array<std::int64_t, 3>{32, 32, 32});
  CHECK(s.output_shape() == Shape{1, 32, 32, 32, 32});
  CHECK(s.weight_shape() == Shape{32, 16, 2, 2, 2});
  // floor((in + 2p - d(k-1) - 1) / s) + 1, per axis: trailing voxels a stride skips are dropped.
  Conv3dShape a{.batch = 2, .in_channels = 4, .out_channels = 6, .input = {5, 9, 7}, .kernel = {1, 3, 3},
                .stride = {1, 2, 2}, .padding = {0, 1, 1}, .dilation = {1, 2, 1}, .groups = 2};
  CHECK(a.output() == std::array<std::int64_t, 3>{5, 4, 4});
  CHECK(a.weight_shape() == Shape{6, 2, 1, 3, 3});
  CHECK(a.input_shape() == Shape{2, 4, 5, 9, 7});
  // Transposed: (in - 1) s - 2p + d(k-1) + output_padding + 1; weights [I, O/g, k...].
  Conv3dShape t{.in_channels = 32, .out_channels = 16, .input = {32, 32, 32}, .kernel = {3, 3, 3},
                .stride = {2, 2, 2}, .padding = {1, 1, 1}, .output_padding = {1, 0, 1}, .groups = 2,
                .transposed = true};
  CHECK(t.output() == std::array<std::int64_t, 3>{64, 63, 64});
  CHECK(t.weight_shape() == Shape{32, 8, 3, 3, 3});
  CHECK(t.bias_shape() == Shape{16});
}

TEST_CASE("Conv3dShape counts multiply-adds") {
  Conv3dShape s{.in_channels = 16, .out_channels = 16, .input = {64, 64, 64}, .kernel = {5, 5, 5},
                .padding = {2, 2, 2}};
  CHECK(s.multiply_adds() == 64LL * 64 * 64 * 16 * 16 * 125);
  Conv3dShape t{.in_channels = 32, .out_channels = 16, .input = {32, 32, 32}, .kernel = {2, 2, 2},
                .stride = {2, 2, 2}, .transposed = true};
  CHECK(t.multiply_adds() == 32LL * 32 * 32 * 32 * 16 * 8);
}

TEST_CASE("Conv3dShape validation names the field and the values") {
  Conv3dShape ok{.in_channels = 4, .out_channels = 8, .input = {8, 8, 8}};
  CHECK_NOTHROW(ok.validate());

  auto bad = ok;
  bad.groups = 3;
  CHECK_THAT(message_of(bad), Catch::Contains("layer.conv") && Catch::Contains("groups") &&
                                  Catch::Contains("in_channels 4"));
  bad = ok;
  bad.kernel = {3, 0, 3};
  CHECK_THAT(message_of(bad), Catch::Contains("kernel") && Catch::Contains("[3,0,3]"));
  bad = ok;
  bad.input = {2, 8, 8};
  CHECK_THAT(message_of(bad), Catch::Contains("input") && Catch::Contains("[2,8,8] gives output [0,6,6]"));
  bad = ok;
  bad.padding = {-1, 0, 0};
  CHECK_THAT(message_of(bad), Catch::Contains("padding"));
  bad = ok;
  bad.output_padding = {1, 0, 0};
  CHECK_THAT(message_of(bad), Catch::Contains("output_padding") && Catch::Contains("transposed"));
  bad.transposed = true;  // stride 1, dilation 1: output padding 1 is not smaller than either
  CHECK_THAT(message_of(bad), Catch::Contains("output_padding") && Catch::Contains("smaller than stride"));
  bad.stride = {2, 1, 1};
  CHECK(message_of(bad).empty());
  bad = ok;
  bad.batch = 0;
  CHECK_THAT(message_of(bad), Catch::Contains("batch") && Catch::Contains(">= 1"));
}

TEST_CASE("Conv3dShape keys caches by every field") {
  Conv3dShape a{.in_channels = 4, .out_channels = 8, .input = {8, 8, 8}};
  auto b = a;
  CHECK(a == b);
  CHECK(Conv3dShapeHash{}(a) == Conv3dShapeHash{}(b));
  b.dilation[2] = 2;
  CHECK_FALSE(a == b);
  CHECK(Conv3dShapeHash{}(a) != Conv3dShapeHash{}(b));
  b = a;
  b.transposed = true;
  CHECK(Conv3dShapeHash{}(a) != Conv3dShapeHash{}(b));
  CHECK(a.to_string() == "conv 4->8 in [1,4,8,8,8] k[3,3,3] s[1,1,1] p[0,0,0] d[1,1,1] g1");
}
