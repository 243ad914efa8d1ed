// JsonReader: the one way medseg reads fields out of JSON (training configs, model options,
// deploy.json, prepare pipelines), so a mistake reads the same everywhere:
//   "<where>: <path.key>: expected <what the type and bounds allow>, got <the value as written>"
// with "(did you mean ...?)" for an unknown key or name. `where` is the file and/or the place
// of the object in it ("configs/x.json: model", "prep.json: image_ops[1]"); the field is the
// dotted JSON path below it ("inference.overlap", "strides[1]"). A missing required value
// reads "got missing".
//
// Also: Field declarations, so that an options struct's JSON form is listed once (key, member
// pointer, enum names) and both reading (read_fields) and writing (write_fields) come from it.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"

namespace medseg {

/// Levenshtein distance, for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b);
/// The candidate nearest to `name` when it is close enough to be a typo, else "".
std::string nearest_name(std::string_view name, const std::vector<std::string>& candidates);

/// A JSON value as errors show it: compact, cut to 60 characters.
std::string json_shown(const nlohmann::json& v);

/// One JSON name of an enumerator. In a table several names may map to one value (aliases);
/// the first name of a value is the one written.
template <class E>
struct EnumName {
  const char* name;
  E value;
};

/// What a value must satisfy beyond its type. Number bounds apply to every number a value
/// holds (each entry of a list, each axis of a triple).
struct Bounds {
  std::optional<double> min{};    // >= min
  std::optional<double> above{};  // > above
  std::optional<double> max{};    // <= max
  std::optional<double> below{};  // < below
  std::size_t size = 0;           // std::vector: exactly this many entries (0: any)
  bool broadcast = true;          // a [d, h, w] triple (std::array<int64, 3>): one integer for all three
};

/// Reads the fields of one JSON object. Every key a read looks at (present or not) becomes a
/// known key; finish() rejects the others.
///   JsonReader r(j, "plan.json: model");
///   auto width = r.get<std::int64_t>("width", {.min = 1});   // required
///   r.read("dropout", o.dropout, {.min = 0, .max = 1});      // optional: keeps o.dropout if absent
///   r.finish();                                              // unknown keys
class JsonReader {
 public:
  /// The place of a field in errors, from its dotted path (a config names the file that set it).
  using WhereOf = std::function<std::string(const std::string& field)>;

  /// Throws unless `j` is an object. `path` is j's dotted path in its document, prefixed to
  /// every field name.
  JsonReader(const nlohmann::json& j, std::string where, std::string path = {})
      : JsonReader(j, WhereOf([w = std::move(where)](const std::string&) { return w; }), std::move(path)) {}
  JsonReader(const nlohmann::json& j, WhereOf where_of, std::string path = {})
      : j_(&j), where_of_(std::move(where_of)), path_(std::move(path)) {
    if (!j.is_object()) fail_field(path_, "a JSON object", j);
  }

  /// A null value reads as an absent one (preprocessing recipes write "min": null).
  JsonReader& nulls_absent(bool on = true) {
    nulls_absent_ = on;
    return *this;
  }

  const nlohmann::json& json() const { return *j_; }
  const std::string& path() const { return path_; }
  /// The dotted path of `key` ("inference.overlap").
  std::string field(std::string_view key) const {
    if (key.empty()) return path_;
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  /// Where errors about `key` say they are.
  std::string where(std::string_view key = {}) const { return where_of_(field(key)); }

  /// Whether `key` is present (and, under nulls_absent, not null). Marks it known.
  bool has(std::string_view key) { return find(key) != nullptr; }
  /// The value of `key`, or null when absent. Marks it known.
  const nlohmann::json* find(std::string_view key) {
    know(key);
    const auto it = j_->find(std::string(key));
    if (it == j_->end() || (nulls_absent_ && it->is_null())) return nullptr;
    return &*it;
  }
  /// Marks keys known without reading them ("type", a key another reader handles).
  void accept(std::initializer_list<std::string_view> keys) {
    for (auto k : keys) know(k);
  }

  /// An optional field: `out` keeps its value when the key is absent. Returns whether present.
  template <class T>
  bool read(std::string_view key, T& out, const Bounds& b = {}) {
    const auto* x = find(key);
    if (x) parse(*x, out, field(key), b);
    return x != nullptr;
  }
  template <class T>
  std::optional<T> opt(std::string_view key, const Bounds& b = {}) {
    std::optional<T> out;
    if (const auto* x = find(key)) parse(*x, out.emplace(), field(key), b);
    return out;
  }
  /// A required field.
  template <class T>
  T get(std::string_view key, const Bounds& b = {}) {
    T out{};
    if (!read(key, out, b)) fail_missing(key, expected<T>(b));
    return out;
  }

  /// A string among `names` (did you mean when close to one).
  std::optional<std::string> opt_choice(std::string_view key, const std::vector<std::string>& names) {
    const auto* x = find(key);
    if (!x) return std::nullopt;
    return choice(*x, field(key), names);
  }
  std::string get_choice(std::string_view key, const std::vector<std::string>& names) {
    auto s = opt_choice(key, names);
    if (!s) fail_missing(key, one_of(names));
    return *s;
  }
  /// An enumerator by name from `table`.
  template <class E, std::size_t N>
  bool read(std::string_view key, E& out, const std::array<EnumName<E>, N>& table) {
    std::vector<std::string> names;
    for (const auto& e : table) names.push_back(e.name);
    const auto s = opt_choice(key, names);
    if (s)
      for (const auto& e : table)
        if (*s == e.name) out = e.value;
    return s.has_value();
  }
  template <class E, std::size_t N>
  std::optional<E> opt(std::string_view key, const std::array<EnumName<E>, N>& table) {
    E v{};
    if (!read(key, v, table)) return std::nullopt;
    return v;
  }

  /// A nested object, read with its own JsonReader (its fields named "key.field").
  JsonReader object(std::string_view key) {
    const auto* x = find(key);
    if (!x) fail_missing(key, "a JSON object");
    return JsonReader(*x, where_of_, field(key), nulls_absent_);
  }
  std::optional<JsonReader> opt_object(std::string_view key) {
    const auto* x = find(key);
    if (!x) return std::nullopt;
    return JsonReader(*x, where_of_, field(key), nulls_absent_);
  }
  /// A list of objects, each read with its own JsonReader (fields named "key[i].field").
  std::vector<JsonReader> objects(std::string_view key, const Bounds& b = {}) {
    std::vector<JsonReader> out;
    const auto* x = find(key);
    if (!x) return out;
    const std::string f = field(key);
    const std::string what = b.size ? "a list of " + std::to_string(b.size) + " JSON objects" : "a list of JSON objects";
    if (!x->is_array() || (b.size && x->size() != b.size)) fail_field(f, what, *x);
    for (std::size_t i = 0; i < x->size(); ++i)
      out.push_back(JsonReader((*x)[i], where_of_, f + "[" + std::to_string(i) + "]", nulls_absent_));
    return out;
  }

  /// Throws on the first key no read looked at: "expected a known key, got unknown key "k""
  /// with the nearest known name, or the list of them.
  void finish() const {
    for (const auto& [key, value] : j_->items()) {
      if (known_.count(key)) continue;
      const std::vector<std::string> names = known_keys();
      const std::string near = nearest_name(key, names);
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      throw Error{ErrorInfo{.where = where(key), .field = field(key), .expected = "a known key",
                            .actual = "unknown key \"" + key + "\"",
                            .detail = near.empty() ? "known keys here: " + list : "did you mean \"" + near + "\"?"}};
    }
  }
  /// The keys read so far, in the order first read.
  std::vector<std::string> known_keys() const { return order_; }

  /// An error about `key` (empty: this object) in the shared wording; `actual` as written.
  [[noreturn]] void fail(std::string_view key, const std::string& expected, const nlohmann::json& actual,
                         const std::string& detail = {}) const {
    fail_field(field(key), expected, actual, detail);
  }
  /// The same where the value is not in the JSON ("missing", a count).
  [[noreturn]] void fail_text(std::string_view key, const std::string& expected, const std::string& actual,
                              const std::string& detail = {}) const {
    throw Error{ErrorInfo{.where = where_of_(field(key)), .field = field(key), .expected = expected, .actual = actual,
                          .detail = detail}};
  }
  [[noreturn]] void fail_missing(std::string_view key, const std::string& expected) const {
    fail_text(key, expected, "missing");
  }

  /// "one of "a", "b", "c"".
  static std::string one_of(const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "\"" : ", \"") + n + "\"";
    return "one of " + s;
  }
  /// What a T within `b` is, as errors say it ("an integer >= 1", "a list of 3 numbers").
  template <class T>
  static std::string expected(const Bounds& b = {});

 private:
  JsonReader(const nlohmann::json& j, WhereOf where_of, std::string path, bool nulls_absent)
      : JsonReader(j, std::move(where_of), std::move(path)) {
    nulls_absent_ = nulls_absent;
  }

  template <class T>
  struct Kind {
    static constexpr bool vector = false, array = false;
  };
  template <class U>
  struct Kind<std::vector<U>> {
    static constexpr bool vector = true, array = false;
    using element = U;
  };
  template <class U, std::size_t N>
  struct Kind<std::array<U, N>> {
    static constexpr bool vector = false, array = true;
    using element = U;
    static constexpr std::size_t size = N;
  };
  template <class T>
  static constexpr bool is_triple = std::is_same_v<T, std::array<std::int64_t, 3>>;

  static std::string bounds_text(const Bounds& b) {
    const auto lo = b.min ? b.min : b.above;
    const auto hi = b.max ? b.max : b.below;
    if (lo && hi) return str(" in ", b.min ? "[" : "(", *lo, ", ", *hi, b.max ? "]" : ")");
    if (b.min) return str(" >= ", *b.min);
    if (b.above) return str(" > ", *b.above);
    if (b.max) return str(" <= ", *b.max);
    if (b.below) return str(" < ", *b.below);
    return "";
  }
  static bool in_bounds(double v, const Bounds& b) {
    return (!b.min || v >= *b.min) && (!b.above || v > *b.above) && (!b.max || v <= *b.max) && (!b.below || v < *b.below);
  }
  /// The plural of expected<T> ("integers >= 1"), for lists.
  template <class T>
  static std::string plural(const Bounds& b) {
    if constexpr (std::is_same_v<T, bool>) return "booleans (true or false)";
    else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) return "non-negative integers" + bounds_text(b);
    else if constexpr (std::is_integral_v<T>) return "integers" + bounds_text(b);
    else if constexpr (std::is_floating_point_v<T>) return "numbers" + bounds_text(b);
    else if constexpr (std::is_same_v<T, std::string>) return "strings";
    else return "entries (each " + expected<T>(b) + ")";
  }

  std::string choice(const nlohmann::json& x, const std::string& f, const std::vector<std::string>& names) const {
    if (x.is_string()) {
      const auto s = x.get<std::string>();
      if (std::find(names.begin(), names.end(), s) != names.end()) return s;
      const std::string near = nearest_name(s, names);
      fail_field(f, one_of(names), x, near.empty() ? "" : "did you mean \"" + near + "\"?");
    }
    fail_field(f, one_of(names), x);
  }

  template <class T>
  void parse(const nlohmann::json& x, T& out, const std::string& f, const Bounds& b) const {
    if constexpr (std::is_same_v<T, bool>) {
      if (!x.is_boolean()) fail_field(f, expected<T>(b), x);
      out = x.get<bool>();
    } else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) {
      const bool ok = x.is_number_unsigned() || (x.is_number_integer() && x.get<std::int64_t>() >= 0);
      if (!ok || x.get<std::uint64_t>() > std::numeric_limits<T>::max() || !in_bounds(static_cast<double>(x.get<std::uint64_t>()), b))
        fail_field(f, expected<T>(b), x);
      out = static_cast<T>(x.get<std::uint64_t>());
    } else if constexpr (std::is_integral_v<T>) {
      if (!x.is_number_integer() || (x.is_number_unsigned() && x.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())))
        fail_field(f, expected<T>(b), x);
      const std::int64_t v = x.get<std::int64_t>();
      if (v < std::int64_t(std::numeric_limits<T>::min()) || v > std::int64_t(std::numeric_limits<T>::max()) ||
          !in_bounds(static_cast<double>(v), b))
        fail_field(f, expected<T>(b), x);
      out = static_cast<T>(v);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!x.is_number() || !in_bounds(x.get<double>(), b)) fail_field(f, expected<T>(b), x);
      out = x.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!x.is_string()) fail_field(f, expected<T>(b), x);
      out = x.get<std::string>();
    } else if constexpr (std::is_same_v<T, nlohmann::json>) {
      out = x;
    } else if constexpr (is_triple<T>) {
      if (b.broadcast && x.is_number()) {
        if (!x.is_number_integer() || !in_bounds(static_cast<double>(x.get<std::int64_t>()), b))
          fail_field(f, expected<T>(b), x);
        const std::int64_t v = x.get<std::int64_t>();
        out = {v, v, v};
        return;
      }
      if (!x.is_array() || x.size() != 3) fail_field(f, expected<T>(b), x);
      for (std::size_t i = 0; i < 3; ++i) {
        const auto& e = x[i];
        if (!e.is_number_integer() || !in_bounds(static_cast<double>(e.get<std::int64_t>()), b)) fail_field(f, expected<T>(b), x);
        out[i] = e.get<std::int64_t>();
      }
    } else if constexpr (Kind<T>::vector || Kind<T>::array) {
      constexpr std::size_t fixed = [] {
        if constexpr (Kind<T>::array) return Kind<T>::size;
        else return std::size_t{0};
      }();
      const std::size_t size = fixed ? fixed : b.size;
      if (!x.is_array() || (size && x.size() != size)) fail_field(f, expected<T>(b), x);
      if constexpr (Kind<T>::vector) out.assign(x.size(), typename Kind<T>::element{});
      for (std::size_t i = 0; i < x.size(); ++i) parse(x[i], out[i], f + "[" + std::to_string(i) + "]", b);
    } else {
      static_assert(sizeof(T) == 0, "JsonReader: no reading for this type");
    }
  }

  [[noreturn]] void fail_field(const std::string& f, const std::string& expected, const nlohmann::json& actual,
                               const std::string& detail = {}) const {
    throw Error{ErrorInfo{.where = where_of_(f), .field = f, .expected = expected, .actual = json_shown(actual), .detail = detail}};
  }

  const nlohmann::json* j_;
  WhereOf where_of_;
  std::string path_;
  bool nulls_absent_ = false;
  std::set<std::string> known_;
  std::vector<std::string> order_;  // known_, in the order first read

  void know(std::string_view key) {
    if (known_.insert(std::string(key)).second) order_.emplace_back(key);
  }
};

template <class T>
std::string JsonReader::expected(const Bounds& b) {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) return "a non-negative integer" + bounds_text(b);
  else if constexpr (std::is_integral_v<T>) return "an integer" + bounds_text(b);
  else if constexpr (std::is_floating_point_v<T>) return "a number" + bounds_text(b);
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_same_v<T, nlohmann::json>) return "a JSON value";
  else if constexpr (is_triple<T>) {
    const std::string each = bounds_text(b).empty() ? "" : ", each" + bounds_text(b);
    return b.broadcast ? "an integer or [d, h, w] of integers" + each : "[d, h, w] of integers" + each;
  } else if constexpr (Kind<T>::array) {
    return "a list of " + std::to_string(Kind<T>::size) + " " + plural<typename Kind<T>::element>(b);
  } else if constexpr (Kind<T>::vector) {
    return b.size ? "a list of " + std::to_string(b.size) + " " + plural<typename Kind<T>::element>(b)
                  : "a list of " + plural<typename Kind<T>::element>(b);
  } else {
    static_assert(sizeof(T) == 0, "JsonReader: no reading for this type");
  }
}

// -- Declared fields: an options struct's JSON form, listed once -------------------------

/// One JSON field of struct O: its key, the member, and for an enumeration its name table.
template <class O, class M>
struct Field {
  const char* key;
  M O::*member;
  const EnumName<M>* names = nullptr;
  std::size_t name_count = 0;
  Bounds bounds{};
};

template <class O, class M>
constexpr Field<O, M> field(const char* key, M O::*member, Bounds bounds = {}) {
  return {key, member, nullptr, 0, bounds};
}
template <class O, class M, std::size_t N>
constexpr Field<O, M> field(const char* key, M O::*member, const std::array<EnumName<M>, N>& names) {
  return {key, member, names.data(), N, {}};
}

/// Reads every declared field present in `r` into `o` (absent ones keep their values).
template <class O, class... Ms>
void read_fields(JsonReader& r, O& o, const std::tuple<Field<O, Ms>...>& fields) {
  std::apply(
      [&](const auto&... f) {
        auto one = [&](const auto& fd) {
          using M = std::remove_cvref_t<decltype(o.*(fd.member))>;
          if (fd.names) {
            std::vector<std::string> names;
            for (std::size_t i = 0; i < fd.name_count; ++i) names.push_back(fd.names[i].name);
            if (const auto s = r.opt_choice(fd.key, names))
              for (std::size_t i = 0; i < fd.name_count; ++i)
                if (*s == fd.names[i].name) {
                  o.*(fd.member) = fd.names[i].value;
                  break;
                }
          } else {
            if constexpr (!std::is_enum_v<M>) r.read(fd.key, o.*(fd.member), fd.bounds);
          }
        };
        (one(f), ...);
      },
      fields);
}

/// Every declared field of `o` as JSON: enumerators by their first name, triples [d, h, w].
template <class O, class... Ms>
nlohmann::json write_fields(const O& o, const std::tuple<Field<O, Ms>...>& fields) {
  nlohmann::json j = nlohmann::json::object();
  std::apply(
      [&](const auto&... f) {
        auto one = [&](const auto& fd) {
          using M = std::remove_cvref_t<decltype(o.*(fd.member))>;
          if constexpr (std::is_enum_v<M>) {
            for (std::size_t i = 0; i < fd.name_count; ++i)
              if (fd.names[i].value == o.*(fd.member)) {
                j[fd.key] = fd.names[i].name;
                break;
              }
          } else {
            j[fd.key] = o.*(fd.member);
          }
        };
        (one(f), ...);
      },
      fields);
  return j;
}

/// The declared keys, in order.
template <class O, class... Ms>
std::vector<std::string> field_keys(const std::tuple<Field<O, Ms>...>& fields) {
  std::vector<std::string> keys;
  std::apply([&](const auto&... f) { (keys.push_back(f.key), ...); }, fields);
  return keys;
}

// ----------------------------------------------------------------------------------------
// Implementation

inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

inline std::string nearest_name(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, name.size() / 3) + 1;  // a typo, not another word
  for (const auto& c : candidates)
    if (const std::size_t d = edit_distance(name, c); d < best_distance) best = c, best_distance = d;
  return best;
}

inline std::string json_shown(const nlohmann::json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

}  // namespace medseg
