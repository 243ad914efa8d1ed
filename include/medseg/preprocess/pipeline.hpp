// The per-case preprocessing recipe of `medseg prepare`: a typed list of steps for the image
// and one for the label, read from JSON the way MedicalSeg's prepare scripts list them
// (window, resample, normalise ...), and their application to one case keeping the geometry.
//   [{"op": "hu_window", "lo": -1250, "hi": 250}, {"op": "resample", "shape": [128, 128, 128]}]
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/image.hpp"
#include "../io/json_fields.hpp"
#include "crop.hpp"
#include "intensity.hpp"
#include "labels.hpp"
#include "resample.hpp"
#include "segmentation_resample.hpp"

namespace medseg::preprocess {

// -- Steps: each names the op of this folder it runs --------------------------------------

struct WindowStep { HuWindow window; };                                    // "hu_window": lo, hi, scale_255
struct NormalizeStep { std::optional<float> lo{}, hi{}; };                     // "normalize": min, max (MedicalSeg)
struct ClipMinMaxStep { float lo = 0, hi = 1; };                           // "clip_minmax": lo, hi
/// "zscore": nonzero, mean + std; "channel": only that channel of a [C,D,H,W] image (nnU-Net
/// normalises each channel by its own scheme), else all voxels together.
struct ZScoreStep { bool nonzero = false; std::optional<Moments> stats{}; std::optional<std::int64_t> channel{}; };
/// "ct_normalize": mean, std, lower, upper; without them, the dataset fingerprint's
/// foreground statistics (prepare computes the fingerprint first, as nnU-Net plans).
struct CtNormalizeStep { CtStats stats{}; bool from_dataset = false; std::optional<std::int64_t> channel{}; };  // "channel" as zscore
/// "resample": shape [D,H,W] or spacing [x,y,z], order, grid ("corners" | "extent").
/// Neither shape nor spacing, in the label's list: the image's final shape.
struct ResampleStep {
  std::optional<Extent3> shape{};
  std::optional<io::Vec3> spacing{};
  int order = 1;
  std::optional<GridMode> grid{};  // default: corners for a shape (zoom), extent for a spacing
  /// "separate_z": nnU-Net's rule for images too (labels always follow it): when the old or
  /// new spacing is anisotropic (ratio > 3), the coarse axis is resampled with order 0.
  bool separate_z = false;
};
struct CropNonzeroStep {};  // "crop_nonzero": the image's nonzero box; the label reuses it
struct PadStep { Extent3 to{}; PadMode mode = PadMode::constant; float value = 0; };  // "pad": to, mode, value
struct RemapStep { std::vector<std::pair<std::int64_t, std::int64_t>> mapping{}; std::optional<std::int64_t> unmapped{}; };
struct LargestComponentStep { Connectivity connectivity = Connectivity::full; ComponentsOf of = ComponentsOf::each_label; };
struct MinVolumeStep { std::int64_t min_voxels = 0; Connectivity connectivity = Connectivity::full; };

using Step = std::variant<WindowStep, NormalizeStep, ClipMinMaxStep, ZScoreStep, CtNormalizeStep, ResampleStep,
                          CropNonzeroStep, PadStep, RemapStep, LargestComponentStep, MinVolumeStep>;

/// One step from its JSON object; `where` names the list and index in errors
/// ("prep.json: image_ops[1]").
Step parse_step(const nlohmann::json& j, const std::string& where);
std::vector<Step> parse_steps(const nlohmann::json& list, const std::string& where);

/// One case while it is being prepared: its image as float and its label as a 3-D int32 map
/// (any label type fits), each voxels and geometry. Image is io::Image on the host, or its
/// device twin (prepare_cuda.hpp): the steps below run on either.
template <class Image, class Label>
struct BasicCaseData {
  Image image;
  std::optional<Label> label;
  std::optional<Box> crop_box;  // set by the image's crop_nonzero
  Extent3 crop_source{};        // the image extent the box was taken from
  std::optional<GridMode> image_grid;  // the grid of the image's last resample
  std::optional<CtStats> dataset_ct;   // the fingerprint's, for ct_normalize without statistics
};
using CaseData = BasicCaseData<io::Image<float>, io::Image<std::int32_t>>;

/// Runs the image steps from `first_image_step` on, then the label steps, on `data` (a
/// CaseData, or its device twin). `where` names the case in errors.
template <class Case>
void apply_steps(Case& data, const std::vector<Step>& image_steps, const std::vector<Step>& label_steps,
                 const std::string& where, std::size_t first_image_step = 0);

/// The image of a freshly read case as float, with the leading steps that fuse run fused: a
/// window (hu_window, or normalize with bounds) followed by a resample to a shape is one pass
/// over the raw voxels, the window inside the resample's load (bit-identical to running them
/// one after the other, without the full-size float copies). Returns how many steps it ran.
std::size_t load_image_fused(CaseData& data, const io::AnyImage& raw, const std::vector<Step>& image_steps);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline Extent3 spatial_of(const Shape& s) {
  const int r = s.rank();
  return {s[r - 3], s[r - 2], s[r - 1]};
}

/// The JSON names of the steps' enumerations.
inline constexpr std::array<EnumName<GridMode>, 2> grid_names{{{"corners", GridMode::corners}, {"extent", GridMode::extent}}};
inline constexpr std::array<EnumName<PadMode>, 3> pad_mode_names{
    {{"constant", PadMode::constant}, {"edge", PadMode::edge}, {"reflect", PadMode::reflect}}};
inline constexpr std::array<EnumName<ComponentsOf>, 2> components_of_names{
    {{"each_label", ComponentsOf::each_label}, {"foreground", ComponentsOf::foreground}}};

inline Connectivity parse_connectivity(JsonReader& r) {
  const int c = r.opt<int>("connectivity").value_or(26);
  if (c != 6 && c != 26) r.fail("connectivity", "6 or 26", *r.find("connectivity"));
  return c == 6 ? Connectivity::faces : Connectivity::full;
}

}  // namespace detail

inline Step parse_step(const nlohmann::json& j, const std::string& where) {
  // Steps keep MedicalSeg's leniency: keys a step does not use are ignored, and null reads as absent.
  JsonReader r(j, where);
  r.nulls_absent();
  const std::string op = r.get_choice("op", {"hu_window", "normalize", "clip_minmax", "zscore", "ct_normalize", "resample",
                                             "crop_nonzero", "pad", "remap", "keep_largest", "remove_small"});
  if (op == "hu_window") {
    HuWindow w;
    w.lo = r.get<float>("lo");
    w.hi = r.get<float>("hi");
    w.scale_255 = r.opt<bool>("scale_255").value_or(false);
    w.nan_value = r.opt<float>("nan_value");
    if (!(w.hi > w.lo)) r.fail_text("hi", "a number > lo", str(w.hi, " (lo ", w.lo, ")"));
    return WindowStep{w};
  }
  if (op == "normalize") return NormalizeStep{r.opt<float>("min"), r.opt<float>("max")};
  if (op == "clip_minmax") return ClipMinMaxStep{r.get<float>("lo"), r.get<float>("hi")};
  if (op == "zscore") {
    ZScoreStep z{r.opt<bool>("nonzero").value_or(false), std::nullopt, r.opt<std::int64_t>("channel", {.min = 0})};
    if (r.has("mean")) z.stats = Moments{r.get<double>("mean"), r.get<double>("std"), 0};
    return z;
  }
  if (op == "ct_normalize") {
    const auto channel = r.opt<std::int64_t>("channel", {.min = 0});
    if (!r.has("mean")) return CtNormalizeStep{{}, true, channel};
    return CtNormalizeStep{{r.get<double>("mean"), r.get<double>("std"), r.get<double>("lower"), r.get<double>("upper")}, false,
                           channel};
  }
  if (op == "resample") {
    ResampleStep step;
    step.shape = r.opt<Extent3>("shape", {.min = 1, .broadcast = false});
    step.spacing = r.opt<io::Vec3>("spacing", {.above = 0});
    if (step.shape && step.spacing) r.fail_text("spacing", "a shape or a spacing, not both", "both");
    step.order = r.opt<int>("order").value_or(1);
    if (step.order != 0 && step.order != 1 && step.order != 3) r.fail("order", "0, 1 or 3", *r.find("order"));
    step.grid = r.opt("grid", detail::grid_names);
    step.separate_z = r.opt<bool>("separate_z").value_or(false);
    return step;
  }
  if (op == "crop_nonzero") return CropNonzeroStep{};
  if (op == "pad") {
    PadStep p{r.get<Extent3>("to", {.broadcast = false}), PadMode::constant, 0.0f};
    r.read("mode", p.mode, detail::pad_mode_names);
    r.read("value", p.value);
    return p;
  }
  if (op == "remap") {
    RemapStep m;
    for (const auto& [from, to] : r.get<std::vector<std::array<std::int64_t, 2>>>("mapping")) m.mapping.emplace_back(from, to);
    m.unmapped = r.opt<std::int64_t>("unmapped");
    return m;
  }
  if (op == "keep_largest")
    return LargestComponentStep{detail::parse_connectivity(r),
                                r.opt("of", detail::components_of_names).value_or(ComponentsOf::each_label)};
  return MinVolumeStep{r.get<std::int64_t>("min_voxels"), detail::parse_connectivity(r)};
}

inline std::vector<Step> parse_steps(const nlohmann::json& list, const std::string& where) {
  std::vector<Step> steps;
  if (list.is_null()) return steps;
  require(list.is_array(), [&] {
    return ErrorInfo{.where = where, .field = "steps", .expected = "a list of {\"op\": ...} objects", .actual = json_shown(list)};
  });
  for (std::size_t i = 0; i < list.size(); ++i) steps.push_back(parse_step(list[i], where + "[" + std::to_string(i) + "]"));
  return steps;
}

namespace detail {

/// The image resampled to `target` on the grid of `options`: resize and the new grid's geometry.
template <class Image>
void resample_image(Image& im, const Extent3& target, const ResampleOptions& options) {
  const Extent3 in = spatial_of(im.voxels.shape());
  im = Image{resize(im.voxels, target, options), resized_geometry(im.geometry, in, target, options.grid)};
}

/// The box of the image, its origin moved to the box's first voxel.
template <class Image>
void crop_image(Image& im, const Box& box) {
  im.geometry.origin = im.geometry.index_to_world(
      {static_cast<double>(box.begin[2]), static_cast<double>(box.begin[1]), static_cast<double>(box.begin[0])});
  im.voxels = crop(im.voxels, box);
}

/// Runs `op` (io::Image in, io::Image out) on an image: here, directly. The device twin
/// (prepare_cuda.hpp) takes the voxels to the host and back, for the ops with no kernel.
template <class T, class F>
void through_host(io::Image<T>& im, F&& op) {
  im = op(std::move(im));
}

/// x = op(x), or only its channel `channel` of a [C,D,H,W] x.
template <class T, class B, class Op>
void on_channel(Tensor<T, B>& x, std::optional<std::int64_t> channel, const std::string& where, Op&& op) {
  if (!channel) {
    x = op(x);
    return;
  }
  require(x.rank() == 4 && *channel < x.size(0), [&] {
    return ErrorInfo{.where = where, .field = "channel", .expected = "a channel of the [C,D,H,W] image " + x.shape().to_string(),
                     .actual = std::to_string(*channel)};
  });
  auto part = x.slice(0, *channel, *channel + 1);
  part.copy_from(op(part.contiguous()));
}

/// One image step on a case, host or device (BasicCaseData).
template <class Case>
void image_step(Case& c, const Step& step, const std::string& where) {
  auto& im = c.image;
  std::visit(
      [&](const auto& s) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, WindowStep>) {
          im.voxels = hu_window(im.voxels, s.window);
        } else if constexpr (std::is_same_v<S, NormalizeStep>) {
          im.voxels = normalize_range(im.voxels, s.lo, s.hi);
        } else if constexpr (std::is_same_v<S, ClipMinMaxStep>) {
          im.voxels = clip_minmax(im.voxels, s.lo, s.hi);
        } else if constexpr (std::is_same_v<S, ZScoreStep>) {
          on_channel(im.voxels, s.channel, where, [&](const auto& x) { return s.stats ? zscore(x, *s.stats) : zscore(x, s.nonzero); });
        } else if constexpr (std::is_same_v<S, CtNormalizeStep>) {
          require(!s.from_dataset || c.dataset_ct.has_value(), [&] {
            return ErrorInfo{.where = where, .field = "ct_normalize", .expected = "mean, std, lower and upper, or a dataset fingerprint",
                             .actual = "neither", .detail = "medseg prepare computes the fingerprint itself"};
          });
          on_channel(im.voxels, s.channel, where, [&](const auto& x) { return ct_normalize(x, s.from_dataset ? *c.dataset_ct : s.stats); });
        } else if constexpr (std::is_same_v<S, ResampleStep>) {
          require(s.shape || s.spacing, [&] {
            return ErrorInfo{.where = where, .field = "resample", .expected = "a shape or a spacing for the image",
                             .actual = "neither"};
          });
          c.image_grid = s.grid.value_or(s.shape ? GridMode::corners : GridMode::extent);
          // resample_to_shape, or resample_to_spacing (the shape shape_for_spacing gives).
          const Extent3 in = spatial_of(im.voxels.shape());
          const Extent3 target = s.shape ? *s.shape : shape_for_spacing(im.geometry, in, *s.spacing);
          const int axis = s.separate_z ? separate_axis(im.geometry.spacing, resized_geometry(im.geometry, in, target, *c.image_grid).spacing, 3.0)
                                        : -1;
          resample_image(im, target, {.order = s.order, .grid = *c.image_grid,
                                      .boundary = *c.image_grid == GridMode::extent && s.separate_z ? Boundary::nearest : Boundary::mirror,
                                      .separate_axis = axis, .separate_order = 0});
        } else if constexpr (std::is_same_v<S, CropNonzeroStep>) {
          c.crop_source = spatial_of(im.voxels.shape());
          c.crop_box = nonzero_box(im.voxels);
          crop_image(im, *c.crop_box);
        } else if constexpr (std::is_same_v<S, PadStep>) {
          through_host(im, [&](io::Image<float> h) {
            return pad(h, padding_to(spatial_of(h.voxels.shape()), s.to), s.mode, s.value);
          });
        } else {
          throw Error{{.where = where, .field = "op", .expected = "an image op", .actual = "a label-only op",
                       .detail = "remap, keep_largest and remove_small belong in label_ops"}};
        }
      },
      step);
}

/// One label step on a case, host or device (BasicCaseData).
template <class Case>
void label_step(Case& c, const Step& step, const std::string& where) {
  auto& lb = *c.label;
  using Label = std::remove_reference_t<decltype(lb)>;
  std::visit(
      [&](const auto& s) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, ResampleStep>) {
          // Follow the image's grid unless told: a label must land on its image's voxels.
          const GridMode grid = s.grid ? *s.grid
                                : s.shape ? GridMode::corners
                                : s.spacing ? GridMode::extent
                                            : c.image_grid.value_or(GridMode::corners);
          const SegmentationResampleOptions o{
              .order = s.order, .grid = grid, .boundary = grid == GridMode::extent ? Boundary::nearest : Boundary::mirror};
          const Extent3 in = spatial_of(lb.voxels.shape());
          Extent3 target = spatial_of(c.image.voxels.shape());
          if (s.shape) target = *s.shape;
          if (s.spacing) target = shape_for_spacing(lb.geometry, in, *s.spacing);
          // resample_segmentation of an io::Image: the axis from the old spacing, else the new.
          const io::Geometry g = resized_geometry(lb.geometry, in, target, o.grid);
          const int axis = separate_axis(lb.geometry.spacing, g.spacing, o.anisotropy_threshold);
          lb = Label{resample_segmentation(lb.voxels, target, o, axis), g};
        } else if constexpr (std::is_same_v<S, CropNonzeroStep>) {
          require(c.crop_box.has_value() && spatial_of(lb.voxels.shape()) == c.crop_source, [&] {
            return ErrorInfo{.where = where, .field = "crop_nonzero",
                             .expected = "the image's crop_nonzero before it, on a label of the image's shape then",
                             .actual = "label " + lb.voxels.shape().to_string()};
          });
          crop_image(lb, *c.crop_box);
        } else if constexpr (std::is_same_v<S, PadStep>) {
          through_host(lb, [&](io::Image<std::int32_t> h) {
            return pad(h, padding_to(spatial_of(h.voxels.shape()), s.to), s.mode, static_cast<std::int32_t>(s.value));
          });
        } else if constexpr (std::is_same_v<S, RemapStep>) {
          LabelMapping<std::int32_t> m;
          for (auto [a, b] : s.mapping) m.emplace_back(static_cast<std::int32_t>(a), static_cast<std::int32_t>(b));
          std::optional<std::int32_t> u;
          if (s.unmapped) u = static_cast<std::int32_t>(*s.unmapped);
          lb.voxels = remap_labels(lb.voxels, m, u);
        } else if constexpr (std::is_same_v<S, LargestComponentStep>) {
          through_host(lb, [&](io::Image<std::int32_t> h) {
            h.voxels = keep_largest_component(h.voxels, s.connectivity, s.of);
            return h;
          });
        } else if constexpr (std::is_same_v<S, MinVolumeStep>) {
          through_host(lb, [&](io::Image<std::int32_t> h) {
            h.voxels = remove_small_components(h.voxels, s.min_voxels, s.connectivity);
            return h;
          });
        } else {
          throw Error{{.where = where, .field = "op", .expected = "a label op (resample, crop_nonzero, pad, remap, "
                                                                  "keep_largest, remove_small)",
                       .actual = "an intensity op", .detail = "intensity ops belong in image_ops"}};
        }
      },
      step);
}

/// The leading window + resample to a shape that load_image_fused runs as one pass, when the
/// steps begin so and the raw image is 3-D or 4-D.
struct FusedLead {
  HuWindow window;
  Extent3 shape;
  ResampleOptions options;
};
inline std::optional<FusedLead> fused_lead(const std::vector<Step>& steps, int rank) {
  std::optional<HuWindow> window;
  if (!steps.empty()) {
    if (const auto* w = std::get_if<WindowStep>(&steps[0])) window = w->window;
    if (const auto* n = std::get_if<NormalizeStep>(&steps[0]); n && n->lo && n->hi && *n->hi > *n->lo)
      window = HuWindow{.lo = *n->lo, .hi = *n->hi};
  }
  const ResampleStep* resample = steps.size() >= 2 ? std::get_if<ResampleStep>(&steps[1]) : nullptr;
  if (!window || !resample || !resample->shape || (rank != 3 && rank != 4)) return std::nullopt;
  return FusedLead{*window, *resample->shape,
                   {.order = resample->order, .grid = resample->grid.value_or(GridMode::corners)}};
}

/// The fused pass on `voxels` (any element type, host or device) of geometry `g`, into the
/// case's image; 2, the steps it ran.
template <class Case, class Voxels>
std::size_t run_fused_lead(Case& c, const Voxels& voxels, const io::Geometry& g, const FusedLead& lead) {
  using Image = decltype(c.image);
  c.image_grid = lead.options.grid;
  const Extent3 in = spatial_of(voxels.shape());
  c.image = Image{resize(voxels, lead.shape, lead.options, lead.window),
                  resized_geometry(g, in, lead.shape, lead.options.grid)};
  return 2;
}

}  // namespace detail

inline std::size_t load_image_fused(CaseData& data, const io::AnyImage& raw, const std::vector<Step>& image_steps) {
  const auto lead = detail::fused_lead(image_steps, io::shape(raw).rank());
  if (!lead) {
    data.image = io::image_cast<float>(raw);
    return 0;
  }
  return std::visit([&](const auto& im) { return detail::run_fused_lead(data, im.voxels, im.geometry, *lead); }, raw);
}

template <class Case>
void apply_steps(Case& data, const std::vector<Step>& image_steps, const std::vector<Step>& label_steps,
                        const std::string& where, std::size_t first_image_step) {
  for (std::size_t i = first_image_step; i < image_steps.size(); ++i)
    detail::image_step(data, image_steps[i], where + ": image_ops[" + std::to_string(i) + "]");
  if (!data.label) return;
  for (std::size_t i = 0; i < label_steps.size(); ++i)
    detail::label_step(data, label_steps[i], where + ": label_ops[" + std::to_string(i) + "]");
}

}  // namespace medseg::preprocess
