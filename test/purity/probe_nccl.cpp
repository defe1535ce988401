// Compiles only where <nccl.h> is on the include path (test/purity/CMakeLists.txt).
#include <nccl.h>

int eplb_purity_probe_nccl() { return 0; }
