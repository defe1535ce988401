// How a failed C call is named in an error message (shared by the MPI and CUDA checks).
#pragma once

#include <string>
#include <string_view>

namespace eplb::runtime::detail {

// "MPI_Bcast(buf, n, ...)" -> "MPI_Bcast(...)": the arguments are noise in a user's error.
inline std::string short_call(std::string_view call) {
  size_t paren = call.find('(');
  if (paren == std::string_view::npos) return std::string(call);
  return std::string(call.substr(0, paren)) + "(...)";
}

// "/long/path/lib/runtime/src/mpi.cpp" -> "mpi.cpp".
inline std::string_view base_name(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace eplb::runtime::detail
