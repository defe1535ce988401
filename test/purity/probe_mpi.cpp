// Compiles only where <mpi.h> is on the include path (test/purity/CMakeLists.txt).
#define OMPI_SKIP_MPICXX 1  // C bindings only, as eplb_runtime compiles them
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

int eplb_purity_probe_mpi() { return 0; }
