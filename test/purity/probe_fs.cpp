// Compiles only where lib/fs (POSIX file I/O) is on the include path (test/purity).
#include "eplb/fs/transfer.hpp"

int eplb_purity_probe_fs() { return 0; }
