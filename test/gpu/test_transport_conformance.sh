#!/usr/bin/env bash
# The transport conformance body against both backends, one process per GPU.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
for np in $(seq 2 "$ngpu") ; do
  if [[ $np -ne 2 && $np -ne 4 && $np -ne 8 && $np -ne $ngpu ]]; then continue; fi
  if mpirun -np "$np" "$bindir/mpi_transport" -r compact > "$work/np$np.log" 2>&1; then
    pass
    echo "np $np: $(tail -1 "$work/np$np.log")"
  else
    fail "mpi_transport at -np $np"; cat "$work/np$np.log" >&2
  fi
done
finish
