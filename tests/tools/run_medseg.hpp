// Runs the medseg command under test (MEDSEG_EXE) as a user would, from a shell.
#pragma once

#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <string>
#include <sys/wait.h>

namespace tools_test {

struct Run {
  int code;         // exit status
  std::string out;  // stdout and stderr together
};

inline Run run_medseg(const std::string& args) {
  const std::string cmd = std::string(MEDSEG_EXE) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int status = pclose(p);
  return {WEXITSTATUS(status), out};
}

}  // namespace tools_test
