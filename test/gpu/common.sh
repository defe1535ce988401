# Shared by the GPU tests: skip (exit 77) where no GPU is usable, else N = number of GPUs.
set -euo pipefail
tool=$(realpath "${1:?usage: $0 path/to/eplb-rebalance}")
bindir=$(dirname "$tool")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! command -v nvidia-smi >/dev/null 2>&1 || ! ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); then
  echo "SKIP: no usable GPU (nvidia-smi missing or lists none)"; exit 77
fi
if [[ $ngpu -lt 1 ]]; then echo "SKIP: no GPU"; exit 77; fi
if ! "$tool" --help 2>/dev/null | grep -q bench; then echo "SKIP: tool does not run"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
work=$(mktemp -d "${TMPDIR:-/tmp}/eplb-gpu.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ompi" && export OMPI_MCA_orte_tmpdir_base="$work/ompi"  # see test/e2e/common.sh
failures=0; checks=0
pass() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL: $*" >&2; }
finish() { echo "$((checks - failures)) passed, $failures failed"; [[ $failures -eq 0 ]]; }
