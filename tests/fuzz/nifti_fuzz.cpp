// libFuzzer target: arbitrary bytes as a .nii or .nii.gz file. Any input must either decode
// or throw medseg::Error; crashes, leaks, undefined behaviour and other exceptions are bugs.
#include <cstddef>
#include <cstdint>

#include "medseg/io/nifti.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace medseg::io;
  try {
    const ByteSpan bytes(data, size);
    if (is_gzip(bytes)) {
      const Bytes inflated = gunzip(bytes, "fuzz.nii.gz");
      decode_nifti(inflated, {}, "fuzz.nii.gz");
    } else {
      decode_nifti(bytes, {}, "fuzz.nii");
      // The same bytes as the header of a pair whose .img is the input again.
      decode_nifti(bytes, bytes, "fuzz.hdr");
    }
  } catch (const medseg::Error&) {
  }
  return 0;
}
