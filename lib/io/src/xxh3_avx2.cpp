// The AVX2 XXH3 kernel (xxh3.hpp); this file alone is compiled with -mavx2, and its code
// runs only where xxh3_kernel() found AVX2 usable.
#define EPLB_XXH3_KERNEL_NAME "avx2"
#define EPLB_XXH3_KERNEL_FN xxh3_avx2_kernel_impl
#include "xxh3_kernel.inc"
