// Everything in io/: Image<T> and its geometry, orientation, and the readers and writers of
// NIfTI, Analyze, MetaImage and NumPy files and DICOM series, with read_image/write_image choosing by extension.
#pragma once

#include "io/dicom.hpp"
#include "io/file.hpp"
#include "io/format.hpp"
#include "io/gzip.hpp"
#include "io/image.hpp"
#include "io/metaimage.hpp"
#include "io/nifti.hpp"
#include "io/npy.hpp"
#include "io/orientation.hpp"
#include "io/voxels.hpp"
