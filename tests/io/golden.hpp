// Helpers of the io tests: golden values produced by a Python script of tests/io/ with
// Debian's /usr/bin/python3 (numpy, nibabel), once per build folder, and scratch folders.
#pragma once

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace medseg::test {

/// The folder `script` (in tests/io/) wrote its manifest.json into, running it when that
/// manifest is missing. Without Debian's Python and nibabel the test exits with 77 (skipped).
inline std::filesystem::path golden_dir(const std::string& script) {
  const std::filesystem::path out = std::filesystem::path(MEDSEG_IO_TEST_DIR) / "golden" / script;
  std::filesystem::create_directories(out.parent_path());
  // CTest runs test cases as parallel processes: one generates, the others wait on the lock.
  const int lock = ::open((out.string() + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
  if (lock >= 0) ::flock(lock, LOCK_EX);
  struct Unlock {
    int fd;
    ~Unlock() {
      if (fd >= 0) ::close(fd);  // closing releases the lock
    }
  } unlock{lock};
  if (std::filesystem::exists(out / "manifest.json")) return out;
  const std::string cmd = "/usr/bin/python3 '" MEDSEG_SOURCE_DIR "/tests/io/" + script + "' '" + out.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  if (status != 0 || !std::filesystem::exists(out / "manifest.json")) {
    std::cerr << "skipped: " << cmd << " failed (Debian's python3-nibabel and python3-numpy are needed)\n";
    std::exit(77);
  }
  return out;
}

inline nlohmann::json manifest(const std::filesystem::path& dir) {
  std::ifstream f(dir / "manifest.json");
  return nlohmann::json::parse(f);
}

/// A fresh empty folder under the build folder, named for the test and process.
inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::path(MEDSEG_IO_TEST_DIR) / "scratch" / (name + "." + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace medseg::test
