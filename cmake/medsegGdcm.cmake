# Looks for GDCM 3 (Debian's libgdcm-dev) and sets MEDSEG_HAS_GDCM; with it, medseg::gdcm
# links the GDCM libraries medseg::dicom_codecs needs. MEDSEG_GDCM is AUTO, ON or OFF. Used by
# the build and, installed, by medsegConfig.cmake, so users find the same GDCM.
set(MEDSEG_HAS_GDCM OFF)
if(NOT DEFINED MEDSEG_GDCM)
  set(MEDSEG_GDCM AUTO)
endif()
if(NOT MEDSEG_GDCM STREQUAL "OFF")
  if(NOT TARGET gdcmMSFF)
    # Debian's GDCMTargets.cmake reports each GDCM tool not installed (they are in
    # libgdcm-tools) as a STATUS message; QUIET does not silence those, the log level does.
    if(DEFINED CMAKE_MESSAGE_LOG_LEVEL)
      set(medseg_saved_log_level "${CMAKE_MESSAGE_LOG_LEVEL}")
    endif()
    set(CMAKE_MESSAGE_LOG_LEVEL WARNING)
    find_package(GDCM 3 CONFIG QUIET)
    if(DEFINED medseg_saved_log_level)
      set(CMAKE_MESSAGE_LOG_LEVEL "${medseg_saved_log_level}")
      unset(medseg_saved_log_level)
    else()
      unset(CMAKE_MESSAGE_LOG_LEVEL)
    endif()
  endif()
  if(TARGET gdcmMSFF)
    set(MEDSEG_HAS_GDCM ON)
  elseif(MEDSEG_GDCM STREQUAL "ON")
    message(FATAL_ERROR "medseg: MEDSEG_GDCM=ON but GDCM 3 was not found (Debian: apt-get install libgdcm-dev)")
  endif()
endif()

if(MEDSEG_HAS_GDCM)
  if(NOT TARGET medseg::gdcm)
    # gdcmMSFF brings gdcmIOD, gdcmDSED, gdcmDICT and gdcmCommon; the codecs (IJG JPEG,
    # CharLS, OpenJPEG) are its own shared-library dependencies.
    add_library(medseg::gdcm INTERFACE IMPORTED)
    set_target_properties(medseg::gdcm PROPERTIES INTERFACE_LINK_LIBRARIES "gdcmMSFF;gdcmDSED;gdcmCommon")
  endif()
  message(STATUS "medseg: DICOM codecs on (GDCM ${GDCM_VERSION})")
else()
  message(STATUS "medseg: DICOM codecs off (JPEG, JPEG-LS and JPEG 2000 DICOM are refused)")
endif()
