// Device rows in a build without CUDA: every pointer is host memory.
#include "eplb/core/error.hpp"
#include "row_memory.hpp"

namespace eplb::capi {

std::unique_ptr<RowMemory> make_device_memory(int, std::chrono::milliseconds) {
  throw core::Error(core::ErrorKind::kComm,
                    "CUDA tensors need the NCCL backend, not in this build");
}

int device_of(const void*) { return -1; }

}  // namespace eplb::capi
