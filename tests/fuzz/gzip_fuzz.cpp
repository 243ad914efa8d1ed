// libFuzzer target: arbitrary bytes as gzip (medseg's sized members or any other writer's)
// and as zlib; inflate or medseg::Error, nothing else.
#include <cstddef>
#include <cstdint>

#include "medseg/io/gzip.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const medseg::io::ByteSpan bytes(data, size);
  try {
    medseg::io::gunzip(bytes, "fuzz.gz");
  } catch (const medseg::Error&) {
  }
  try {
    medseg::io::zlib_inflate(bytes, size * 3, "fuzz.zraw");
  } catch (const medseg::Error&) {
  }
  return 0;
}
