// libFuzzer target: arbitrary bytes as a .npy file; decode or medseg::Error, nothing else.
#include <cstddef>
#include <cstdint>

#include "medseg/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    medseg::io::decode_npy(medseg::io::ByteSpan(data, size), "fuzz.npy");
  } catch (const medseg::Error&) {
  }
  return 0;
}
