#!/usr/bin/env bash
# The in-server library on CUDA tensors (test/gpu/inserver_gpu.py), one process per GPU under
# torchrun: a ProcessGroup, a lent ncclComm_t, the caller's stream, asynchronous layers next
# to a matmul, and (2+ GPUs) a silent peer. Skipped without torch with CUDA.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
python=${PYTHON:-python3}
"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
  { echo "SKIP: no torch with CUDA for $python"; exit 77; }
lib=$(cd "$(dirname "$tool")/../lib" && pwd)
export EPLB_LIBRARY=$lib/libeplb.so NCCL_NVLS_ENABLE=0
if timeout 300 "$python" -m torch.distributed.run --nproc_per_node="$ngpu" \
     "$here/inserver_gpu.py" >"$work/inserver.log" 2>&1; then
  pass
else
  fail "inserver_gpu.py at $ngpu GPUs"
fi
cat "$work/inserver.log"
n=$(grep -c "^case .* ok" "$work/inserver.log" || true)
[[ $n -ge 4 ]] && pass || fail "only $n cases ok"
finish
