// XXH3-64 kernel choice (xxh3.hpp). The generic kernel is this file's, compiled with the
// project's flags.
#define EPLB_XXH3_KERNEL_NAME "generic"
#define EPLB_XXH3_KERNEL_FN xxh3_generic_kernel
#include "xxh3_kernel.inc"

#include <cstdlib>
#include <new>
#include <string>

namespace eplb::io::detail {

#ifdef EPLB_HAVE_XXH3_AVX2
const Xxh3Kernel& xxh3_avx2_kernel_impl();
const Xxh3Kernel* xxh3_avx2_kernel() {
  // __builtin_cpu_supports("avx2") also checks that the OS saves the AVX registers.
  return __builtin_cpu_supports("avx2") ? &xxh3_avx2_kernel_impl() : nullptr;
}
#else
const Xxh3Kernel* xxh3_avx2_kernel() { return nullptr; }
#endif

const Xxh3Kernel& xxh3_kernel() {
  static const Xxh3Kernel& chosen = []() -> const Xxh3Kernel& {
    const char* forced = std::getenv("EPLB_XXH3");
    if (forced != nullptr && std::string(forced) == "generic") return xxh3_generic_kernel();
    const Xxh3Kernel* avx2 = xxh3_avx2_kernel();
    return avx2 != nullptr ? *avx2 : xxh3_generic_kernel();
  }();
  return chosen;
}

Xxh3Stream::Xxh3Stream(const Xxh3Kernel& kernel)
    : kernel_(&kernel), state_(kernel.create(), Destroy{kernel.destroy}) {
  if (!state_) throw std::bad_alloc();
}

}  // namespace eplb::io::detail
