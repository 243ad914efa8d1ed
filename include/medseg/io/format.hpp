// One entry point for every image format, chosen by the file name's extension:
//   .nii .nii.gz .hdr .img (.hdr.gz .img.gz)  NIfTI-1/2, Analyze     io/nifti.hpp
//   .mha .mhd                                 MetaImage              io/metaimage.hpp
//   .npy                                      NumPy (no geometry)    io/npy.hpp
//   a folder, or .dcm                         DICOM series / file    io/dicom.hpp (read only)
// Writing stores the image's geometry in the format's own fields, so reading it back in
// any format gives the same voxels and geometry (.npy excepted: it has no geometry).
#pragma once

#include <filesystem>
#include <string>

#include "../core/error.hpp"
#include "dicom.hpp"
#include "image.hpp"
#include "metaimage.hpp"
#include "nifti.hpp"
#include "npy.hpp"
#include "voxels.hpp"

namespace medseg::io {

enum class ImageFormat { nifti, metaimage, npy, dicom };

/// The format of `path` by its extension (a folder is a DICOM series); throws Error naming
/// the accepted ones otherwise.
ImageFormat format_of(const std::filesystem::path& path);

/// Reads any supported image. See ReadOptions (io/voxels.hpp) for the element type.
AnyImage read_image(const std::filesystem::path& path, const ReadOptions& options = {});

/// Reads any supported image as elements of type T (scaling applied in float64).
template <Element T>
Image<T> read_image_as(const std::filesystem::path& path) {
  return std::get<Image<T>>(read_image(path, {.dtype = dtype_of<T>}));
}

struct WriteOptions {
  int compression_level = 1;  // .nii.gz, compressed .mha/.mhd: libdeflate level 1..12
  bool compress_metaimage = true;
  int nifti_version = 0;      // 0: NIfTI-1 unless a dimension needs NIfTI-2
};

/// Writes `image` in the format its extension names (any but DICOM). Images of one type convert
/// implicitly: write_image(Image<float>{...}, "out.nii.gz").
void write_image(const AnyImage& image, const std::filesystem::path& path, const WriteOptions& options = {});

// ----------------------------------------------------------------------------------------
// Implementation

inline ImageFormat format_of(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path)) return ImageFormat::dicom;
  const std::string ext = lower_extensions(path);
  for (const char* e : {".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz"})
    if (ext.ends_with(e)) return ImageFormat::nifti;
  if (ext.ends_with(".mha") || ext.ends_with(".mhd")) return ImageFormat::metaimage;
  if (ext.ends_with(".npy")) return ImageFormat::npy;
  if (ext.ends_with(".dcm")) return ImageFormat::dicom;
  throw Error{{.where = path.string(), .field = "extension",
               .expected = ".nii, .nii.gz, .hdr/.img, .mha, .mhd, .npy, .dcm or a folder of DICOM files",
               .actual = ext.empty() ? "none" : "\"" + ext + "\""}};
}

inline AnyImage read_image(const std::filesystem::path& path, const ReadOptions& options) {
  switch (format_of(path)) {
    case ImageFormat::nifti: return read_nifti(path, options);
    case ImageFormat::metaimage: return read_metaimage(path, options);
    case ImageFormat::npy: return read_npy(path, options);
    case ImageFormat::dicom:
      return std::filesystem::is_directory(path) ? read_dicom_series(path, options) : read_dicom_file(path, options);
  }
  throw Error{{.where = path.string(), .field = "format", .expected = "a known format", .actual = "none"}};
}

inline void write_image(const AnyImage& image, const std::filesystem::path& path, const WriteOptions& options) {
  switch (format_of(path)) {
    case ImageFormat::nifti:
      return write_nifti(image, path, {.version = options.nifti_version, .compression_level = options.compression_level});
    case ImageFormat::metaimage:
      return write_metaimage(image, path,
                             {.compress = options.compress_metaimage, .compression_level = options.compression_level});
    case ImageFormat::npy: return write_npy(image, path);
    case ImageFormat::dicom: break;
  }
  throw Error{{.where = path.string(), .field = "format",
               .expected = "a format medseg writes (.nii, .nii.gz, .hdr/.img, .mha, .mhd, .npy)",
               .actual = "DICOM (medseg reads DICOM, it does not write it)"}};
}

}  // namespace medseg::io
