// DICOM pixel data beyond raw samples: RLE (decoded here, PS3.5 Annex G), 1-bit unpacking,
// colour (planar reordering, YBR_FULL/YBR_FULL_422 to RGB) and, when medseg is built with
// GDCM (the medseg::dicom_codecs target defines MEDSEG_WITH_GDCM=1), the JPEG family: JPEG
// baseline/extended/lossless, JPEG-LS and JPEG 2000 frames are handed to GDCM's codecs the way
// pydicom's gdcm handler hands them over (an in-memory gdcm::Image, never GDCM's file parser,
// so header fields and geometry stay medseg's own). RLE is decoded here rather than by GDCM:
// GDCM 3.0.21 mis-orders the byte segments of 16- and 32-bit colour RLE.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "file.hpp"

#if defined(MEDSEG_WITH_GDCM) && MEDSEG_WITH_GDCM
#include <gdcmFragment.h>
#include <gdcmImage.h>
#include <gdcmPhotometricInterpretation.h>
#include <gdcmPixelFormat.h>
#include <gdcmSequenceOfFragments.h>
#include <gdcmTransferSyntax.h>
#endif

namespace medseg::io::detail {

/// True when this build decodes the JPEG family (JPEG, JPEG-LS, JPEG 2000) through GDCM.
inline constexpr bool dicom_has_gdcm =
#if defined(MEDSEG_WITH_GDCM) && MEDSEG_WITH_GDCM
    true;
#else
    false;
#endif

/// The JPEG-family transfer syntaxes GDCM decodes (those pydicom's gdcm handler lists).
inline const char* dicom_jpeg_family_name(const std::string& ts) {
  if (ts == "1.2.840.10008.1.2.4.50") return "JPEG baseline";
  if (ts == "1.2.840.10008.1.2.4.51") return "JPEG extended";
  if (ts == "1.2.840.10008.1.2.4.57") return "JPEG lossless";
  if (ts == "1.2.840.10008.1.2.4.70") return "JPEG lossless SV1";
  if (ts == "1.2.840.10008.1.2.4.80") return "JPEG-LS lossless";
  if (ts == "1.2.840.10008.1.2.4.81") return "JPEG-LS near-lossless";
  if (ts == "1.2.840.10008.1.2.4.90") return "JPEG 2000 lossless";
  if (ts == "1.2.840.10008.1.2.4.91") return "JPEG 2000";
  return nullptr;
}

/// Packed 1-bit samples (least significant bit first, as PS3.5 8.1.1) to one byte each.
inline Bytes unpack_bits(ByteSpan packed, std::size_t count) {
  Bytes out(count);
  for (std::size_t i = 0; i < count && i / 8 < packed.size(); ++i) out[i] = (packed[i / 8] >> (i % 8)) & 1u;
  return out;
}

/// RLE frames (one fragment each) to native-order samples, each frame planar:
/// [frame][sample][row][column]. Segment s*bytes + b holds byte b (most significant first).
inline Bytes rle_decode(const std::vector<ByteSpan>& fragments, int frames, int rows, int columns, int samples,
                        int bits_allocated, const std::string& where) {
  auto fail = [&](const std::string& field, const std::string& expected, const std::string& actual) {
    throw Error{{.where = where, .field = field, .expected = expected, .actual = actual}};
  };
  const int bytes = bits_allocated / 8;
  const std::size_t plane = static_cast<std::size_t>(rows) * static_cast<std::size_t>(columns);
  if (static_cast<int>(fragments.size()) != frames)
    fail("PixelData (7FE0,0010)", "one RLE fragment per frame (" + std::to_string(frames) + ")",
         std::to_string(fragments.size()) + " fragments");
  const std::size_t frame_bytes = plane * static_cast<std::size_t>(samples * bytes);
  for (const auto& frag : fragments)
    if (plane > 64 * frag.size())  // a run codes at most 128 bytes in 2: no frame expands further
      fail("PixelData (7FE0,0010)", "RLE frames that can hold " + std::to_string(rows) + " x " + std::to_string(columns) +
                                        " pixels", std::to_string(frag.size()) + " bytes");
  Bytes out(frame_bytes * static_cast<std::size_t>(frames));
  Bytes segment(plane);
  for (int f = 0; f < frames; ++f) {
    const ByteSpan frag = fragments[static_cast<std::size_t>(f)];
    if (frag.size() < 64) fail("RLE header", "64 bytes", std::to_string(frag.size()) + " bytes");
    const std::uint32_t count = load<std::uint32_t>(frag.data(), !host_is_little_endian);
    if (static_cast<int>(count) != samples * bytes)
      fail("RLE header", std::to_string(samples * bytes) + " segments (" + std::to_string(samples) + " samples of " +
                             std::to_string(bytes) + " bytes)",
           std::to_string(count));
    for (std::uint32_t s = 0; s < count; ++s) {
      const std::uint32_t begin = load<std::uint32_t>(frag.data() + 4 + 4 * s, !host_is_little_endian);
      const std::uint32_t end =
          s + 1 < count ? load<std::uint32_t>(frag.data() + 8 + 4 * s, !host_is_little_endian) : static_cast<std::uint32_t>(frag.size());
      if (begin < 64 || end < begin || end > frag.size())
        fail("RLE segment offset", "offsets inside the fragment", std::to_string(begin) + ".." + std::to_string(end));
      // PackBits: n in [0, 127] copies n + 1 bytes, n in [-127, -1] repeats one byte 1 - n times.
      std::size_t got = 0;
      for (std::size_t p = begin; p < end && got < plane;) {
        const auto n = static_cast<std::int8_t>(frag[p++]);
        if (n >= 0) {
          const std::size_t k = std::min<std::size_t>({static_cast<std::size_t>(n) + 1, end - p, plane - got});
          std::memcpy(&segment[got], &frag[p], k);
          got += k;
          p += static_cast<std::size_t>(n) + 1;
        } else if (n != -128) {
          if (p >= end) break;
          const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(1 - n), plane - got);
          std::memset(&segment[got], frag[p++], k);
          got += k;
        }
      }
      if (got < plane)
        fail("RLE segment " + std::to_string(s) + " of frame " + std::to_string(f), std::to_string(plane) + " bytes",
             std::to_string(got) + " bytes");
      const int sample = static_cast<int>(s) / bytes, byte = static_cast<int>(s) % bytes;  // byte 0: most significant
      const int shift = host_is_little_endian ? bytes - 1 - byte : byte;
      std::uint8_t* dst = out.data() + static_cast<std::size_t>(f) * frame_bytes +
                          static_cast<std::size_t>(sample) * plane * static_cast<std::size_t>(bytes);
      for (std::size_t i = 0; i < plane; ++i) dst[i * static_cast<std::size_t>(bytes) + static_cast<std::size_t>(shift)] = segment[i];
    }
  }
  return out;
}

/// YBR_FULL_422 samples (Y1 Y2 Cb Cr for each pair of pixels along a row) to YBR_FULL,
/// interleaved, as pydicom upsamples them: both pixels of a pair take the pair's Cb and Cr.
inline Bytes expand_ybr_422(ByteSpan src, int frames, int rows, int columns, const std::string& where) {
  const std::size_t pairs = static_cast<std::size_t>(frames) * static_cast<std::size_t>(rows) *
                            static_cast<std::size_t>(columns) / 2;
  if (columns % 2 != 0 || src.size() < pairs * 4)
    throw Error{{.where = where, .field = "PixelData (7FE0,0010)",
                 .expected = "YBR_FULL_422: an even number of columns and " + std::to_string(pairs * 4) + " bytes",
                 .actual = std::to_string(columns) + " columns, " + std::to_string(src.size()) + " bytes"}};
  Bytes out(pairs * 6);
  for (std::size_t p = 0; p < pairs; ++p) {
    const std::uint8_t* s = &src[4 * p];
    std::uint8_t* d = &out[6 * p];
    d[0] = s[0], d[1] = s[2], d[2] = s[3], d[3] = s[1], d[4] = s[2], d[5] = s[3];
  }
  return out;
}

/// 8-bit YBR_FULL to RGB in place, any layout (`stride` between a pixel's Y, Cb and Cr), with
/// PS3.3 C.7.6.3.1.2's matrix in float32 and round-half-up, as pydicom's convert_color_space.
inline void ybr_full_to_rgb(std::uint8_t* data, std::size_t pixels, std::size_t step, std::size_t stride) {
  const float cb_g = -0.114f * 1.772f / 0.587f, cr_g = -0.299f * 1.402f / 0.587f;
  for (std::size_t i = 0; i < pixels; ++i) {
    std::uint8_t* p = data + i * step;
    const float y = p[0], cb = static_cast<float>(p[stride]) - 128.0f, cr = static_cast<float>(p[2 * stride]) - 128.0f;
    const float rgb[3] = {y + 1.402f * cr, y + cb_g * cb + cr_g * cr, y + 1.772f * cb};
    for (int c = 0; c < 3; ++c)
      p[static_cast<std::size_t>(c) * stride] = static_cast<std::uint8_t>(std::clamp(std::floor(rgb[c] + 0.5f), 0.0f, 255.0f));
  }
}

#if defined(MEDSEG_WITH_GDCM) && MEDSEG_WITH_GDCM
/// Decodes JPEG-family fragments through GDCM's codecs: a single-frame image gets its
/// fragments joined, a multi-frame one passes them as they are (as pydicom does). Returns
/// the samples in native byte order, interleaved (GDCM's output for these syntaxes).
inline Bytes gdcm_decode(const std::vector<ByteSpan>& fragments, const std::string& transfer_syntax,
                         const std::string& photometric, int frames, int rows, int columns, int samples,
                         int bits_allocated, int bits_stored, int pixel_representation, int planar,
                         const std::string& where) {
  gdcm::Image image;
  image.SetNumberOfDimensions(frames == 1 ? 2 : 3);
  const unsigned int dims[3] = {static_cast<unsigned>(columns), static_cast<unsigned>(rows), static_cast<unsigned>(frames)};
  image.SetDimensions(dims);
  gdcm::SmartPointer<gdcm::SequenceOfFragments> sequence = new gdcm::SequenceOfFragments;
  Bytes joined;
  auto add = [&](ByteSpan b) {
    gdcm::Fragment fragment;
    fragment.SetByteValue(reinterpret_cast<const char*>(b.data()), static_cast<std::uint32_t>(b.size()));
    sequence->AddFragment(fragment);
  };
  if (frames == 1) {
    for (const auto& f : fragments) joined.insert(joined.end(), f.begin(), f.end());
    add(joined);
  } else {
    for (const auto& f : fragments) add(f);
  }
  gdcm::DataElement pixel_data(gdcm::Tag(0x7FE0, 0x0010));
  pixel_data.SetValue(*sequence);
  pixel_data.SetVLToUndefined();
  image.SetDataElement(pixel_data);
  const auto pi = gdcm::PhotometricInterpretation::GetPIType(photometric.c_str());
  image.SetPhotometricInterpretation(gdcm::PhotometricInterpretation(pi));
  image.SetTransferSyntax(gdcm::TransferSyntax(gdcm::TransferSyntax::GetTSType(transfer_syntax.c_str())));
  const int high_bit = (bits_stored > 0 ? bits_stored : bits_allocated) - 1;
  image.SetPixelFormat(gdcm::PixelFormat(static_cast<unsigned short>(samples), static_cast<unsigned short>(bits_allocated),
                                         static_cast<unsigned short>(bits_stored > 0 ? bits_stored : bits_allocated),
                                         static_cast<unsigned short>(high_bit), static_cast<unsigned short>(pixel_representation)));
  image.SetPlanarConfiguration(static_cast<unsigned int>(planar));
  Bytes out(image.GetBufferLength());
  if (out.empty() || !image.GetBuffer(reinterpret_cast<char*>(out.data())))
    throw Error{{.where = where, .field = "PixelData (7FE0,0010)",
                 .expected = std::string(dicom_jpeg_family_name(transfer_syntax)) + " frames GDCM can decode",
                 .actual = "data GDCM's codec rejected", .detail = "GDCM's own message, if any, is on stderr"}};
  return out;
}
#endif

}  // namespace medseg::io::detail
