// Compiles only where <cuda_runtime.h> is on the include path (test/purity/CMakeLists.txt).
#include <cuda_runtime.h>

int eplb_purity_probe_cuda() { return 0; }
