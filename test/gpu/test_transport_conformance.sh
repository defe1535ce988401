#!/usr/bin/env bash
# The transport conformance body against both backends (mpi, nccl with pinned host and
# device segments), one process per GPU, at 2, 4, 8 and all GPUs. Fails if the NCCL
# backend was skipped although every process has a GPU.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
for np in $(seq 2 "$ngpu"); do
  if [[ $np -ne 2 && $np -ne 4 && $np -ne 8 && $np -ne $ngpu ]]; then continue; fi
  log="$work/np$np.log"
  if timeout 120 mpirun -np "$np" "$bindir/mpi_transport" > "$log" 2>&1; then
    pass
  else
    fail "mpi_transport at -np $np"; tail -40 "$log" >&2
  fi
  if grep -q "nccl backend skipped" "$log"; then fail "np $np: the NCCL backend did not run"; else pass; fi
  echo "np $np: $(grep -E 'test cases' "$log" | sed 's/\x1b\[[0-9;]*m//g' | sort | uniq -c | tr -s ' ')"
done
finish
