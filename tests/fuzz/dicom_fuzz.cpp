// libFuzzer target: arbitrary bytes as a DICOM file (header, sequences, pixel data, the
// deflated syntax); parse or medseg::Error, nothing else.
#include <cstddef>
#include <cstdint>

#include "medseg/io/dicom.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    medseg::DType type{};
    medseg::io::detail::load_dicom(medseg::io::ByteSpan(data, size), "fuzz.dcm", &type);
  } catch (const medseg::Error&) {
  }
  return 0;
}
