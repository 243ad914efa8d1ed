// medseg::Error, the single exception type of the library. Its message always says where
// the problem is (an op, a layer's parameter path, a file), which field was wrong, what was
// expected and what was found, so a user can fix the input without reading our code.
#pragma once

#include <concepts>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace medseg {

/// The parts of an error message. Leave a part empty when it does not apply.
///   throw Error{{.where = "nifti: scan.nii.gz", .field = "dim[1]",
///                .expected = "a positive size", .actual = "-3"}};
/// reads "nifti: scan.nii.gz: dim[1]: expected a positive size, got -3".
struct ErrorInfo {
  std::string where{};     // the op, layer path or file
  std::string field{};     // the argument, header field or config key
  std::string expected{};  // what would have been accepted
  std::string actual{};    // what was given
  std::string detail{};    // anything else worth saying (a hint, the library's own message)
};

class Error : public std::runtime_error {
 public:
  explicit Error(ErrorInfo info) : std::runtime_error(compose(info)), info_(std::move(info)) {}
  /// A message with no parts (a template, so that `Error{{.where = ...}}` is never ambiguous).
  template <std::convertible_to<std::string_view> Text>
  explicit Error(const Text& message) : Error(ErrorInfo{.detail = std::string(std::string_view(message))}) {}

  const ErrorInfo& info() const noexcept { return info_; }

 private:
  static std::string compose(const ErrorInfo& i) {
    std::string m = i.where;
    auto part = [&m](const std::string& s) {
      if (s.empty()) return;
      if (!m.empty()) m += ": ";
      m += s;
    };
    part(i.field);
    if (!i.expected.empty() || !i.actual.empty()) {
      std::string e;
      if (!i.expected.empty()) e = "expected " + i.expected;
      if (!i.actual.empty()) e += (e.empty() ? "got " : ", got ") + i.actual;
      part(e);
    }
    if (!i.detail.empty()) m += m.empty() ? i.detail : " (" + i.detail + ")";
    return m.empty() ? std::string("medseg error") : m;
  }

  ErrorInfo info_;
};

/// Throws Error{make_info()} when `condition` is false. The message is built only on
/// failure, so checks are free on hot paths:
///   require(x.rank() == 5, [&] { return ErrorInfo{.where = path, .field = "input rank",
///                                                 .expected = "5 (NCDHW)", .actual = str(x.rank())}; });
template <class MakeInfo>
inline void require(bool condition, MakeInfo&& make_info) {
  if (!condition) [[unlikely]]
    throw Error{std::forward<MakeInfo>(make_info)()};
}

/// Any streamable value as text, for the parts of an ErrorInfo.
template <class... Ts>
std::string str(const Ts&... values) {
  std::ostringstream s;
  (s << ... << values);
  return s.str();
}

}  // namespace medseg
