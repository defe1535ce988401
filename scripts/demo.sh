#!/usr/bin/env bash
# The main job on the built-in example, on the CPU: generate a small checkpoint for
# configs/demo/old.json, rebalance it to configs/demo/new.json with `mpirun -np 4`, verify
# the result, and show what moved.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh" >/dev/null
[[ -x "$root/build/bin/eplb-rebalance" ]] || "$root/scripts/build.sh"
tool="$root/build/bin/eplb-rebalance"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe -np 4)
work="$root/build/demo"
rm -rf "$work" && mkdir -p "$work"
old="$root/configs/demo/old.json" new="$root/configs/demo/new.json"
tensors="w13:fp8_e4m3:256x128,w2:bf16:128x128,w13_scale:fp32:2x1"

echo "== 1. what would move (plan)"
"$tool" plan --old "$old" --new "$new"
echo
echo "== 2. generate a synthetic checkpoint for the old placement"
"${mpi[@]}" "$tool" generate --placement "$old" --tensors "$tensors" --seed 7 --output "$work/ckpt"
echo
echo "== 3. rebalance it on the CPU (MPI backend)"
"${mpi[@]}" "$tool" --old "$old" --new "$new" --input "$work/ckpt" --output "$work/ckpt-new" \
  --backend mpi
echo
echo "== 4. verify every slot (checksums, placement, replicas, and the generator's bytes)"
"${mpi[@]}" "$tool" verify --checkpoint "$work/ckpt-new" --placement "$new" --seed 7
echo
echo "demo done: input $work/ckpt, output $work/ckpt-new"
