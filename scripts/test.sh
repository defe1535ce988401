#!/usr/bin/env bash
# Installs what is missing, checks the formatting of the files this change touches, builds,
# and runs every test (unit, mpi, e2e; gpu tests are reported as skipped where no GPU is
# usable); then the unit and MPI tests again under ASan + UBSan (scripts/sanitize.sh) and
# each libFuzzer target briefly (scripts/fuzz.sh). docs/RELIABILITY.md has the CI budget.
#   usage: scripts/test.sh [ctest args, e.g. -L unit]
#   EPLB_WERROR=ON|OFF (ON): warnings (-Wconversion and -Wsign-conversion included) are
#   errors in build/ (gcc, NCCL/CUDA sources included). The sanitizer and fuzz builds do
#   not set it.
#   EPLB_SANITIZE_TESTS=ON|OFF (ON): run scripts/sanitize.sh.
#   EPLB_FUZZ_SECONDS=30: seconds per fuzz target (0 skips fuzzing; docs/RELIABILITY.md,
#   "In CI", has the budget).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EPLB_WERROR=${EPLB_WERROR:-ON}
"$root/scripts/install-deps.sh"
"$root/scripts/check-format.sh"
"$root/scripts/build.sh" -DEPLB_WERROR="$EPLB_WERROR"
# Open MPI refuses to run as root unless told; CI and containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
cd "$root/build"
ctest --output-on-failure -j "$(nproc)" "$@"
cd "$root"
if [[ ${EPLB_SANITIZE_TESTS:-ON} == ON ]]; then
  "$root/scripts/sanitize.sh"
fi
if [[ ${EPLB_FUZZ_SECONDS:-30} != 0 ]]; then
  EPLB_FUZZ_SECONDS=${EPLB_FUZZ_SECONDS:-30} "$root/scripts/fuzz.sh"
fi
