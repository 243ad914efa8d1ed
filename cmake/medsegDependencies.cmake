# Finds medseg's CPU dependencies (all Debian packages; scripts/setup.sh installs them) and
# sets MEDSEG_CPU_DEPENDENCIES to the targets medseg::medseg links. Used by the build and,
# installed, by medsegConfig.cmake, so users find the same libraries.
include(CMakeFindDependencyMacro)
find_package(Threads REQUIRED)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(xtensor REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(ZLIB REQUIRED)
# libpng writes the overlay pictures and training curves (include/medseg/viz/png.hpp).
find_package(PNG REQUIRED)

# oneDNN computes CPU convolutions: on AVX-512 it is 5-10x faster than im2col + GEMM.
# Debian's dnnl-config.cmake insists on OpenCL headers (its build has a GPU runtime we do
# not use), so the library is found directly.
if(NOT TARGET medseg::dnnl)
  find_library(MEDSEG_DNNL_LIBRARY NAMES dnnl REQUIRED)
  find_path(MEDSEG_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp REQUIRED)
  add_library(medseg::dnnl UNKNOWN IMPORTED)
  set_target_properties(medseg::dnnl PROPERTIES IMPORTED_LOCATION "${MEDSEG_DNNL_LIBRARY}"
                                                INTERFACE_INCLUDE_DIRECTORIES "${MEDSEG_DNNL_INCLUDE_DIR}")
endif()

# libdeflate inflates .nii.gz several times faster than zlib; Debian ships no CMake config.
if(NOT TARGET medseg::libdeflate)
  find_library(MEDSEG_LIBDEFLATE_LIBRARY NAMES deflate REQUIRED)
  find_path(MEDSEG_LIBDEFLATE_INCLUDE_DIR libdeflate.h REQUIRED)
  add_library(medseg::libdeflate UNKNOWN IMPORTED)
  set_target_properties(medseg::libdeflate PROPERTIES IMPORTED_LOCATION "${MEDSEG_LIBDEFLATE_LIBRARY}"
                                                      INTERFACE_INCLUDE_DIRECTORIES "${MEDSEG_LIBDEFLATE_INCLUDE_DIR}")
endif()

set(MEDSEG_CPU_DEPENDENCIES Threads::Threads Eigen3::Eigen xtensor nlohmann_json::nlohmann_json ZLIB::ZLIB
    medseg::dnnl medseg::libdeflate PNG::PNG)
