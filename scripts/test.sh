#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, mpi, e2e; gpu tests are
# reported as skipped where no GPU is usable).
#   usage: scripts/test.sh [ctest args, e.g. -L unit]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
# Open MPI refuses to run as root unless told; CI and containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
cd "$root/build"
ctest --output-on-failure -j "$(nproc)" "$@"
