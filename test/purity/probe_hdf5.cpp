// Compiles only where <hdf5.h> is on the include path (test/purity/CMakeLists.txt).
#include <hdf5.h>

int eplb_purity_probe_hdf5() { return 0; }
