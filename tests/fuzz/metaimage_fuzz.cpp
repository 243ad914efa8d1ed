// libFuzzer target: arbitrary bytes as an .mha file (voxels LOCAL, or the same bytes as the
// external data file of an .mhd); decode or medseg::Error, nothing else.
#include <cstddef>
#include <cstdint>

#include "medseg/io/metaimage.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const medseg::io::ByteSpan bytes(data, size);
  try {
    medseg::io::decode_metaimage(bytes, bytes, "fuzz.mha");
  } catch (const medseg::Error&) {
  }
  return 0;
}
