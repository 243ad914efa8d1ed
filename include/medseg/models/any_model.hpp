// AnyModel: one of medseg's segmentation networks chosen at run time from JSON, the one way
// the trainer, `medseg export` and `medseg infer` build a model. A std::variant of the model
// types (one dispatch per model call, none per layer) that satisfies nn::Layer, so
// nn::parameters, optimizers and state dicts work on it as on the model it holds.
#pragma once

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

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
/// Reads the fields of one JSON object by name and type; finish() rejects the keys no read
/// asked for, so a misspelt option fails instead of being ignored.
class JsonFields {
 public:
  JsonFields(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {
    require(j.is_object(), [&] {
      return ErrorInfo{.where = where_, .field = "model", .expected = "a JSON object", .actual = j.dump()};
    });
  }
  bool has(const char* key) const { return j_.contains(key); }

  void read(const char* key, std::int64_t& v) {
    if (const auto* x = find(key)) v = integer(*x, key);
  }
  void read(const char* key, std::uint64_t& v) {
    if (const auto* x = find(key)) {
      require(x->is_number_unsigned() || (x->is_number_integer() && x->get<std::int64_t>() >= 0),
              [&] { return fail(key, "a non-negative integer", *x); });
      v = x->get<std::uint64_t>();
    }
  }
  void read(const char* key, float& v) {
    if (const auto* x = find(key)) {
      require(x->is_number(), [&] { return fail(key, "a number", *x); });
      v = x->get<float>();
    }
  }
  void read(const char* key, bool& v) {
    if (const auto* x = find(key)) {
      require(x->is_boolean(), [&] { return fail(key, "true or false", *x); });
      v = x->get<bool>();
    }
  }
  void read(const char* key, Dhw& v) {
    if (const auto* x = find(key)) v = triple(*x, key);
  }
  void read(const char* key, std::vector<std::int64_t>& v) {
    if (const auto* x = find(key)) {
      require(x->is_array(), [&] { return fail(key, "an array of integers", *x); });
      v.clear();
      for (std::size_t i = 0; i < x->size(); ++i) v.push_back(integer((*x)[i], key + ("[" + std::to_string(i) + "]")));
    }
  }
  void read(const char* key, std::vector<Dhw>& v) {
    if (const auto* x = find(key)) {
      require(x->is_array(), [&] { return fail(key, "an array of integers or [d, h, w] triples", *x); });
      v.clear();
      for (std::size_t i = 0; i < x->size(); ++i) v.push_back(triple((*x)[i], key + ("[" + std::to_string(i) + "]")));
    }
  }
  void read(const char* key, std::array<Dhw, 4>& v) {
    std::vector<Dhw> list;
    if (!find(key)) return;
    read(key, list);
    require(list.size() == 4, [&] { return fail(key, "4 entries (one per down level)", j_.at(key)); });
    std::copy(list.begin(), list.end(), v.begin());
  }
  /// A string among `names` (several names may map to one value; the first is the canonical one).
  template <class E>
  void read(const char* key, E& v, const std::vector<std::pair<const char*, E>>& names) {
    const auto* x = find(key);
    if (!x) return;
    std::string accepted;
    for (const auto& [name, value] : names) {
      if (x->is_string() && x->get<std::string>() == name) {
        v = value;
        return;
      }
      accepted += (accepted.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    }
    throw Error(fail(key, "one of " + accepted, *x));
  }
  /// Throws on a key no read asked for.
  void finish() const {
    for (const auto& [key, value] : j_.items())
      require(read_.count(key) > 0, [&] {
        std::string known;
        for (const auto& k : read_) known += (known.empty() ? "" : ", ") + k;
        return ErrorInfo{.where = where_, .field = key, .expected = "a known option (" + known + ")",
                         .actual = "unknown key \"" + key + "\""};
      });
  }
  /// Marks a key as understood without reading it ("type").
  void accept(const char* key) { read_.insert(key); }

 private:
  const nlohmann::json* find(const char* key) {
    read_.insert(key);
    return j_.contains(key) ? &j_.at(key) : nullptr;
  }
  ErrorInfo fail(const std::string& field, const std::string& expected, const nlohmann::json& actual) const {
    return ErrorInfo{.where = where_, .field = field, .expected = expected, .actual = actual.dump()};
  }
  std::int64_t integer(const nlohmann::json& x, const std::string& field) const {
    require(x.is_number_integer(), [&] { return fail(field, "an integer", x); });
    return x.get<std::int64_t>();
  }
  Dhw triple(const nlohmann::json& x, const std::string& field) const {
    if (x.is_number_integer()) {
      const std::int64_t v = x.get<std::int64_t>();
      return {v, v, v};
    }
    require(x.is_array() && x.size() == 3 && x[0].is_number_integer() && x[1].is_number_integer() && x[2].is_number_integer(),
            [&] { return fail(field, "an integer or [d, h, w] of integers", x); });
    return {x[0].get<std::int64_t>(), x[1].get<std::int64_t>(), x[2].get<std::int64_t>()};
  }

  const nlohmann::json& j_;
  std::string where_;
  std::set<std::string> read_;
};

inline nlohmann::json dhw_json(const Dhw& d) { return nlohmann::json::array({d[0], d[1], d[2]}); }
template <class Range>
nlohmann::json dhw_list_json(const Range& r) {
  auto a = nlohmann::json::array();
  for (const Dhw& d : r) a.push_back(dhw_json(d));
  return a;
}

inline const char* norm_name(Norm n) { return n == Norm::batch ? "batch" : n == Norm::group ? "group" : "instance"; }
inline std::vector<std::pair<const char*, Norm>> norm_names() {
  return {{"batch", Norm::batch}, {"group", Norm::group}, {"instance", Norm::instance}};
}

inline VNetOptions vnet_options(JsonFields& f) {
  VNetOptions o;
  f.read("in_channels", o.in_channels);
  f.read("num_classes", o.num_classes);
  f.read("norm", o.norm, norm_names());
  f.read("activation", o.activation, {{"prelu", Activation::prelu}, {"elu", Activation::elu}});
  f.read("dropout", o.dropout);
  f.read("down_kernel", o.down_kernel);
  f.read("down_stride", o.down_stride);
  f.read("width", o.width);
  f.read("seed", o.seed);
  return o;
}

inline nlohmann::json vnet_json(const VNetOptions& o) {
  return {{"in_channels", o.in_channels}, {"num_classes", o.num_classes}, {"norm", norm_name(o.norm)},
          {"activation", o.activation == Activation::elu ? "elu" : "prelu"}, {"dropout", o.dropout},
          {"down_kernel", dhw_list_json(o.down_kernel)}, {"down_stride", dhw_list_json(o.down_stride)},
          {"width", o.width}, {"seed", o.seed}};
}

inline UNet3DOptions unet3d_options(JsonFields& f) {
  UNet3DOptions o;
  f.read("in_channels", o.in_channels);
  f.read("num_classes", o.num_classes);
  f.read("channels", o.channels);
  f.read("strides", o.strides);
  f.read("kernel", o.kernel);
  f.read("up_kernel", o.up_kernel);
  f.read("num_res_units", o.num_res_units);
  f.read("norm", o.norm, norm_names());
  f.read("num_groups", o.num_groups);
  f.read("activation", o.activation,
         {{"prelu", UNetActivation::prelu}, {"relu", UNetActivation::relu}, {"leaky_relu", UNetActivation::leaky_relu},
          {"leakyrelu", UNetActivation::leaky_relu}});
  f.read("negative_slope", o.negative_slope);
  f.read("dropout", o.dropout);
  f.read("bias", o.bias);
  f.read("seed", o.seed);
  return o;
}

inline nlohmann::json unet3d_json(const UNet3DOptions& o) {
  const char* act = o.activation == UNetActivation::relu ? "relu" : o.activation == UNetActivation::leaky_relu ? "leaky_relu" : "prelu";
  return {{"in_channels", o.in_channels}, {"num_classes", o.num_classes}, {"channels", o.channels},
          {"strides", dhw_list_json(o.strides)}, {"kernel", dhw_json(o.kernel)}, {"up_kernel", dhw_json(o.up_kernel)},
          {"num_res_units", o.num_res_units}, {"norm", norm_name(o.norm)}, {"num_groups", o.num_groups},
          {"activation", act}, {"negative_slope", o.negative_slope}, {"dropout", o.dropout}, {"bias", o.bias},
          {"seed", o.seed}};
}

inline DynamicUNetOptions dynamic_unet_options(JsonFields& f) {
  DynamicUNetOptions o;
  f.read("in_channels", o.in_channels);
  f.read("num_classes", o.num_classes);
  if (f.has("features")) {
    // A plan that gives only the features: nnU-Net's defaults for that many stages.
    f.read("features", o.features);
    const std::size_t n = o.features.size();
    o.kernels.assign(n, Dhw{3, 3, 3});
    o.strides.assign(n, Dhw{2, 2, 2});
    if (n > 0) o.strides[0] = {1, 1, 1};
    o.convs_per_stage.assign(n, 2);
    o.convs_per_stage_decoder.assign(n > 0 ? n - 1 : 0, 2);
  }
  f.read("kernels", o.kernels);
  f.read("strides", o.strides);
  f.read("convs_per_stage", o.convs_per_stage);
  f.read("convs_per_stage_decoder", o.convs_per_stage_decoder);
  f.read("deep_supervision", o.deep_supervision);
  f.read("negative_slope", o.negative_slope);
  f.read("conv_bias", o.conv_bias);
  f.read("residual_encoder", o.residual_encoder);
  return o;
}

inline nlohmann::json dynamic_unet_json(const DynamicUNetOptions& o) {
  return {{"in_channels", o.in_channels}, {"num_classes", o.num_classes}, {"features", o.features},
          {"kernels", dhw_list_json(o.kernels)}, {"strides", dhw_list_json(o.strides)},
          {"convs_per_stage", o.convs_per_stage}, {"convs_per_stage_decoder", o.convs_per_stage_decoder},
          {"deep_supervision", o.deep_supervision}, {"negative_slope", o.negative_slope}, {"conv_bias", o.conv_bias},
          {"residual_encoder", o.residual_encoder}};
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
  detail::JsonFields f(j, where);
  f.accept("type");
  require(j.contains("type") && j.at("type").is_string(), [&] {
    return ErrorInfo{.where = where, .field = "type", .expected = "\"VNet\", \"VNetDeepSup\", \"UNet3D\" or \"DynamicUNet\"",
                     .actual = j.contains("type") ? j.at("type").dump() : "missing"};
  });
  const std::string type = j.at("type").get<std::string>();
  // Options are read (and unknown keys rejected) before any weights are allocated.
  auto build = [&](auto make) -> AnyModel {
    try {
      return make();
    } catch (const Error& e) {
      // The model names its own field; say which configuration it came from.
      ErrorInfo info = e.info();
      info.where = where + ": " + (info.where.empty() ? type : info.where);
      throw Error(std::move(info));
    }
  };
  if (type == "VNet" || type == "VNetDeepSup") {
    const VNetOptions o = detail::vnet_options(f);
    f.finish();
    if (type == "VNet") return build([&] { return AnyModel(VNet<B>(o)); });
    return build([&] { return AnyModel(VNetDeepSup<B>(o)); });
  }
  if (type == "UNet3D") {
    const UNet3DOptions o = detail::unet3d_options(f);
    f.finish();
    return build([&] { return AnyModel(UNet3D<B>(o)); });
  }
  if (type == "DynamicUNet") {
    const DynamicUNetOptions o = detail::dynamic_unet_options(f);
    f.finish();
    return build([&] { return AnyModel(DynamicUNet<B>(o)); });
  }
  throw Error(ErrorInfo{.where = where, .field = "type", .expected = "\"VNet\", \"VNetDeepSup\", \"UNet3D\" or \"DynamicUNet\"",
                        .actual = j.at("type").dump()});
}

template <class B>
nlohmann::json AnyModel<B>::to_json() const {
  nlohmann::json j = std::visit(
      [](const auto& m) -> nlohmann::json {
        using M = std::remove_cvref_t<decltype(m)>;
        if constexpr (std::is_same_v<M, UNet3D<B>>)
          return detail::unet3d_json(m.options());
        else if constexpr (std::is_same_v<M, DynamicUNet<B>>)
          return detail::dynamic_unet_json(m.options());
        else
          return detail::vnet_json(m.options());
      },
      model_);
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
