// medseg's version. CMake reads it from this line, so this is the one place to change it.
#pragma once

namespace medseg {
inline constexpr const char* version = "0.1.0";
}
