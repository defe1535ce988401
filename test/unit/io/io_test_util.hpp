// Helpers shared by the lib/io unit tests.
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include "eplb/core/error.hpp"
#include "test_files.hpp"

namespace eplb::io::test {

using eplb::test::error_text;
using eplb::test::read_file;
using eplb::test::TempDir;
using eplb::test::write_file;

// Runs a shell command; returns its stdout, sets `status` to its exit status.
inline std::string run_command(const std::string& command, int& status) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed");
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int rc = pclose(pipe);
  status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

}  // namespace eplb::io::test
