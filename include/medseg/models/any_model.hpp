// AnyModel: one of medseg's segmentation networks chosen at run time from JSON, the one way
// the trainer, `medseg export` and `medseg infer` build a model. A std::variant of the model
// types (one dispatch per model call, none per layer) that satisfies nn::Layer, so
// nn::parameters, optimizers and state dicts work on it as on the model it holds.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/json_fields.hpp"
#include "../nn.hpp"
#include "dynamic_unet.hpp"
#include "unet3d.hpp"
#include "vnet.hpp"
#include "vnet_deep_supervision.hpp"

namespace medseg::models {

/// A VNet, VNetDeepSup, UNet3D or DynamicUNet, described by JSON whose keys are the C++
/// option fields:
///   {"type": "UNet3D", "in_channels": 1, "num_classes": 3, "channels": [16, 32, 64, 128],
///    "strides": [2, 2, [1, 2, 2]], "num_res_units": 2, "norm": "batch"}
///   {"type": "DynamicUNet", "features": [32, 64, 128, 256, 320],
///    "kernels": [[1, 3, 3], 3, 3, 3, 3], "strides": [1, [1, 2, 2], 2, 2, 2]}
///   {"type": "VNet", "num_classes": 2, "norm": "group", "width": 8}
/// A triple (kernel, stride) is [d, h, w] or one integer for all three axes. Enumerations are
/// strings named as the C++ enumerators: norm "batch" | "group" | "instance"; VNet activation
/// "prelu" | "elu"; UNet3D activation "prelu" | "relu" | "leaky_relu" (MONAI's "leakyrelu" is
/// accepted). Absent keys keep the C++ defaults, except that a DynamicUNet given `features`
/// of n stages defaults its per-stage lists to n entries of nnU-Net's values (3x3x3 kernels,
/// strides 1 then 2, two convs per stage). An unknown key, a wrong JSON type or a value the
/// model rejects throws Error naming `where`, the field, what was expected and what was given.
/// to_json() writes every option, and from_json(to_json()) rebuilds the same architecture.
template <class B = Cpu>
class AnyModel {
 public:
  using backend = B;
  using Variant = std::variant<VNet<B>, VNetDeepSup<B>, UNet3D<B>, DynamicUNet<B>>;

  template <class M>
    requires(std::same_as<M, VNet<B>> || std::same_as<M, VNetDeepSup<B>> || std::same_as<M, UNet3D<B>> ||
             std::same_as<M, DynamicUNet<B>>)
  AnyModel(M model) : model_(std::move(model)) {}  // NOLINT: implicit, so any model converts

  /// The model `j` describes, with fresh (PyTorch-default) weights. `where` names the source
  /// in errors ("config.json: model").
  static AnyModel from_json(const nlohmann::json& j, const std::string& where);
  /// {"type": ..., every option}.
  nlohmann::json to_json() const;
  /// "VNet", "VNetDeepSup", "UNet3D" or "DynamicUNet".
  std::string type() const;

  /// x [N, in_channels(), D, H, W] -> [N, num_classes(), D, H, W], the main output.
  Tensor<float, B> forward(const Tensor<float, B>& x);
  Tensor<float, B> backward(const Tensor<float, B>& dy);
  /// Every output (main first, then the deep-supervision heads in training); models without
  /// heads return the main output alone. backward_all takes one gradient per output.
  std::vector<Tensor<float, B>> forward_all(const Tensor<float, B>& x);
  Tensor<float, B> backward_all(const std::vector<Tensor<float, B>>& dys);

  void train(bool on = true) {
    std::visit([&](auto& m) { m.train(on); }, model_);
  }
  /// Whether backward computes the gradient of the input (default on), where the held model
  /// offers the switch (every model but UNet3D); off saves the first layer's data gradient.
  void set_input_gradient(bool on) {
    std::visit(
        [&](auto& m) {
          if constexpr (requires { m.set_input_gradient(on); }) m.set_input_gradient(on);
        },
        model_);
  }
  void eval() { train(false); }
  bool training() const {
    return std::visit([](const auto& m) { return m.training(); }, model_);
  }
  const std::string& path() const {
    return std::visit([](const auto& m) -> const std::string& { return m.path(); }, model_);
  }
  void set_path(const std::string& p) {
    std::visit([&](auto& m) { m.set_path(p); }, model_);
  }
  /// The held model's release_outputs (eval-mode buffers), where it has one.
  void release_outputs() {
    std::visit(
        [](auto& m) {
          if constexpr (requires { m.release_outputs(); }) m.release_outputs();
        },
        model_);
  }
  template <class F>
  void visit_parameters(F&& f) {
    std::visit([&](auto& m) { m.visit_parameters(f); }, model_);
  }
  template <class F>
  void visit_buffers(F&& f) {
    std::visit([&](auto& m) { m.visit_buffers(f); }, model_);
  }

  std::int64_t in_channels() const;
  std::int64_t num_classes() const;
  /// Per axis (D, H, W), the product of the down-sampling strides: an input's D, H, W must
  /// be multiples of it. (A VNet whose down kernels exceed their strides, as MedicalSeg's
  /// spine config, also needs each level's size to survive those valid convolutions.)
  Dhw size_divisor() const;
  /// Whether forward_all returns deep-supervision heads in training.
  bool deep_supervision() const;

  /// The held model, for code that needs its own interface.
  Variant& variant() { return model_; }
  const Variant& variant() const { return model_; }

 private:
  Variant model_;
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
/// The JSON names of the models' enumerations (the first name of a value is the one written).
inline constexpr std::array<EnumName<Norm>, 3> norm_names{{{"batch", Norm::batch}, {"group", Norm::group}, {"instance", Norm::instance}}};
inline constexpr std::array<EnumName<Activation>, 2> vnet_activation_names{{{"prelu", Activation::prelu}, {"elu", Activation::elu}}};
inline constexpr std::array<EnumName<UNetActivation>, 4> unet_activation_names{{{"prelu", UNetActivation::prelu},
                                                                                 {"relu", UNetActivation::relu},
                                                                                 {"leaky_relu", UNetActivation::leaky_relu},
                                                                                 {"leakyrelu", UNetActivation::leaky_relu}}};  // MONAI's name

/// A model's options as JSON, declared once: OptionFields<O>::fields lists every key with its
/// member (and name table), and from_json, to_json and the unknown-key check all come from it.
template <class O>
struct OptionFields;

template <>
struct OptionFields<VNetOptions> {
  using O = VNetOptions;
  static constexpr auto fields = std::tuple{
      field("in_channels", &O::in_channels), field("num_classes", &O::num_classes),
      field("norm", &O::norm, norm_names),   field("activation", &O::activation, vnet_activation_names),
      field("dropout", &O::dropout),         field("down_kernel", &O::down_kernel),
      field("down_stride", &O::down_stride), field("width", &O::width),
      field("seed", &O::seed)};
};

template <>
struct OptionFields<UNet3DOptions> {
  using O = UNet3DOptions;
  static constexpr auto fields = std::tuple{
      field("in_channels", &O::in_channels),     field("num_classes", &O::num_classes),
      field("channels", &O::channels),           field("strides", &O::strides),
      field("kernel", &O::kernel),               field("up_kernel", &O::up_kernel),
      field("num_res_units", &O::num_res_units), field("norm", &O::norm, norm_names),
      field("num_groups", &O::num_groups),       field("activation", &O::activation, unet_activation_names),
      field("negative_slope", &O::negative_slope), field("dropout", &O::dropout),
      field("bias", &O::bias),                   field("seed", &O::seed)};
};

template <>
struct OptionFields<DynamicUNetOptions> {
  using O = DynamicUNetOptions;
  static constexpr auto fields = std::tuple{
      field("in_channels", &O::in_channels),
      field("num_classes", &O::num_classes),
      field("features", &O::features),
      field("kernels", &O::kernels),
      field("strides", &O::strides),
      field("convs_per_stage", &O::convs_per_stage),
      field("convs_per_stage_decoder", &O::convs_per_stage_decoder),
      field("deep_supervision", &O::deep_supervision),
      field("negative_slope", &O::negative_slope),
      field("conv_bias", &O::conv_bias),
      field("residual_encoder", &O::residual_encoder)};
  /// A plan that gives only the features: nnU-Net's defaults for that many stages, before
  /// the per-stage keys present are read.
  static void defaults(JsonReader& r, O& o) {
    if (!r.read("features", o.features)) return;
    const std::size_t n = o.features.size();
    o.kernels.assign(n, Dhw{3, 3, 3});
    o.strides.assign(n, Dhw{2, 2, 2});
    if (n > 0) o.strides[0] = {1, 1, 1};
    o.convs_per_stage.assign(n, 2);
    o.convs_per_stage_decoder.assign(n > 0 ? n - 1 : 0, 2);
  }
};

/// The options `r` describes (C++ defaults for absent keys); unknown keys are left to r.finish().
template <class O>
O read_options(JsonReader& r) {
  O o;
  if constexpr (requires { OptionFields<O>::defaults(r, o); }) OptionFields<O>::defaults(r, o);
  read_fields(r, o, OptionFields<O>::fields);
  return o;
}

/// Every option of `o`.
template <class O>
nlohmann::json write_options(const O& o) {
  return write_fields(o, OptionFields<O>::fields);
}

inline Dhw stride_product(const auto& strides) {
  Dhw d{1, 1, 1};
  for (const Dhw& s : strides)
    for (std::size_t a = 0; a < 3; ++a) d[a] *= s[a];
  return d;
}

template <class M>
constexpr const char* model_type_name() {
  if constexpr (std::is_same_v<M, VNet<typename M::backend>>) return "VNet";
  if constexpr (std::is_same_v<M, VNetDeepSup<typename M::backend>>) return "VNetDeepSup";
  if constexpr (std::is_same_v<M, UNet3D<typename M::backend>>) return "UNet3D";
  if constexpr (std::is_same_v<M, DynamicUNet<typename M::backend>>) return "DynamicUNet";
  return "?";
}
}  // namespace detail

template <class B>
AnyModel<B> AnyModel<B>::from_json(const nlohmann::json& j, const std::string& where) {
  JsonReader r(j, where);
  const std::string type = r.get_choice("type", {"VNet", "VNetDeepSup", "UNet3D", "DynamicUNet"});
  // Options are read (and unknown keys rejected) before any weights are allocated.
  auto build = [&](auto options, auto make) -> AnyModel {
    r.finish();
    try {
      return make(options);
    } catch (const Error& e) {
      // The model names its own field; say which configuration it came from.
      ErrorInfo info = e.info();
      info.where = where + ": " + (info.where.empty() ? type : info.where);
      throw Error(std::move(info));
    }
  };
  if (type == "VNet")
    return build(detail::read_options<VNetOptions>(r), [](const VNetOptions& o) { return AnyModel(VNet<B>(o)); });
  if (type == "VNetDeepSup")
    return build(detail::read_options<VNetOptions>(r), [](const VNetOptions& o) { return AnyModel(VNetDeepSup<B>(o)); });
  if (type == "UNet3D")
    return build(detail::read_options<UNet3DOptions>(r), [](const UNet3DOptions& o) { return AnyModel(UNet3D<B>(o)); });
  return build(detail::read_options<DynamicUNetOptions>(r),
               [](const DynamicUNetOptions& o) { return AnyModel(DynamicUNet<B>(o)); });
}

template <class B>
nlohmann::json AnyModel<B>::to_json() const {
  nlohmann::json j = std::visit([](const auto& m) { return detail::write_options(m.options()); }, model_);
  j["type"] = type();
  return j;
}

template <class B>
std::string AnyModel<B>::type() const {
  return std::visit([](const auto& m) -> std::string { return detail::model_type_name<std::remove_cvref_t<decltype(m)>>(); },
                    model_);
}

template <class B>
Tensor<float, B> AnyModel<B>::forward(const Tensor<float, B>& x) {
  return std::visit([&](auto& m) { return m.forward(x); }, model_);
}

template <class B>
Tensor<float, B> AnyModel<B>::backward(const Tensor<float, B>& dy) {
  return std::visit([&](auto& m) { return m.backward(dy); }, model_);
}

template <class B>
std::vector<Tensor<float, B>> AnyModel<B>::forward_all(const Tensor<float, B>& x) {
  return std::visit(
      [&](auto& m) -> std::vector<Tensor<float, B>> {
        if constexpr (requires { m.forward_all(x); })
          return m.forward_all(x);
        else
          return {m.forward(x)};
      },
      model_);
}

template <class B>
Tensor<float, B> AnyModel<B>::backward_all(const std::vector<Tensor<float, B>>& dys) {
  return std::visit(
      [&](auto& m) -> Tensor<float, B> {
        if constexpr (requires { m.backward_all(dys); }) {
          return m.backward_all(dys);
        } else {
          require(dys.size() == 1, [&] {
            return ErrorInfo{.where = type() + (m.path().empty() ? "" : " '" + m.path() + "'"), .field = "output gradients",
                             .expected = "1 (one per returned output)", .actual = std::to_string(dys.size())};
          });
          return m.backward(dys.front());
        }
      },
      model_);
}

template <class B>
std::int64_t AnyModel<B>::in_channels() const {
  return std::visit([](const auto& m) { return m.options().in_channels; }, model_);
}

template <class B>
std::int64_t AnyModel<B>::num_classes() const {
  return std::visit([](const auto& m) { return m.options().num_classes; }, model_);
}

template <class B>
Dhw AnyModel<B>::size_divisor() const {
  return std::visit(
      [](const auto& m) {
        using M = std::remove_cvref_t<decltype(m)>;
        if constexpr (std::is_same_v<M, VNet<B>> || std::is_same_v<M, VNetDeepSup<B>>)
          return detail::stride_product(m.options().down_stride);
        else
          return detail::stride_product(m.options().strides);
      },
      model_);
}

template <class B>
bool AnyModel<B>::deep_supervision() const {
  return std::visit(
      [](const auto& m) {
        using M = std::remove_cvref_t<decltype(m)>;
        if constexpr (std::is_same_v<M, VNetDeepSup<B>>) return true;
        if constexpr (std::is_same_v<M, DynamicUNet<B>>) return m.options().deep_supervision;
        return false;
      },
      model_);
}

}  // namespace medseg::models
