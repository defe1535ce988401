#!/usr/bin/env bash
# GPU selection follows the launcher: each rank sees exactly one GPU through
# CUDA_VISIBLE_DEVICES (what slurm's --gpus-per-task=1 does), takes it, and the NCCL run
# writes the same bytes as the MPI run. Also the other binding: every rank sees every GPU and
# takes its node-local rank's. Two processes may never share a GPU: with one visible device
# for both, --backend nccl is refused (exit 64); auto takes MPI on one node, saying why
# (the fallback for a shared GPU across nodes is unit-tested: test_backend_choice.cpp).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
np=$ngpu
[[ $np -ge 2 ]] || { echo "SKIP: needs 2 GPUs"; exit 77; }
d=$work; cfg="$here/../../configs/demo"
timeout 60 mpirun -np "$np" "$tool" generate --placement "$cfg/old.json" --tensors w:bf16:512x512,s:fp32:4 \
  --seed 3 --output "$d/in" >/dev/null
timeout 120 mpirun -np "$np" "$tool" --old "$cfg/old.json" --new "$cfg/new.json" --input "$d/in" \
  --output "$d/out-mpi" --backend mpi >"$d/mpi.log" 2>&1 && pass || { fail "mpi run"; cat "$d/mpi.log" >&2; }
# One visible GPU per rank, numbered by the rank's node-local index.
cat >"$d/bind.sh" <<'SH'
#!/usr/bin/env bash
export CUDA_VISIBLE_DEVICES=$OMPI_COMM_WORLD_LOCAL_RANK
exec "$@"
SH
chmod +x "$d/bind.sh"
if timeout 120 mpirun -np "$np" "$d/bind.sh" "$tool" --old "$cfg/old.json" --new "$cfg/new.json" --input "$d/in" \
     --output "$d/out-bound" --backend nccl -v >"$d/bound.log" 2>&1; then pass; else fail "nccl run, one GPU per rank"; cat "$d/bound.log" >&2; fi
grep -q "backend: nccl" "$d/bound.log" && pass || fail "per-rank binding did not use NCCL"
for r in $(seq 0 $((np - 1))); do
  grep -qE "rank $r on .*: GPU 0 of 1 visible .*CUDA_VISIBLE_DEVICES=$r\)" "$d/bound.log" && pass ||
    fail "rank $r: not 'GPU 0 of 1 visible' with CUDA_VISIBLE_DEVICES=$r"
done
# Each rank a different physical GPU (PCI bus ids differ).
n_bus=$(grep -oE "rank [0-9]+ on .*\(PCI [^,]+" "$d/bound.log" | sed 's/.*PCI //' | sort -u | wc -l)
[[ $n_bus -eq $np ]] && pass || fail "expected $np distinct PCI ids, got $n_bus"
# Every GPU visible to every rank: the node-local rank picks.
timeout 120 mpirun -np "$np" "$tool" --old "$cfg/old.json" --new "$cfg/new.json" --input "$d/in" \
  --output "$d/out-all" --backend nccl >"$d/all.log" 2>&1 && pass || { fail "nccl run, all GPUs visible"; cat "$d/all.log" >&2; }
for r in $(seq 0 $((np - 1))); do
  grep -qE "rank $r on .*: GPU $r of $np visible" "$d/all.log" && pass || fail "rank $r did not take GPU $r of $np"
done
for out in out-bound out-all; do
  for f in "$d"/out-mpi/rank-*.h5; do
    cmp -s "$f" "$d/$out/$(basename "$f")" && pass || fail "$out/$(basename "$f") differs from the MPI run"
  done
  timeout 60 mpirun -np "$np" "$tool" verify --checkpoint "$d/$out" --placement "$cfg/new.json" --seed 3 \
    >"$d/verify-$out.log" 2>&1 && pass || { fail "verify $out"; cat "$d/verify-$out.log" >&2; }
done
# Two ranks, one GPU between them: refused with nccl; auto takes MPI on one node anyway.
cat >"$d/share.sh" <<'SH'
#!/usr/bin/env bash
export CUDA_VISIBLE_DEVICES=0
exec "$@"
SH
chmod +x "$d/share.sh"
rc=0; timeout 120 mpirun -np 2 "$d/share.sh" "$tool" --old "$cfg/old.json" --new "$cfg/new.json" --input "$d/in" \
  --output "$d/out-share" --backend nccl >"$d/share.log" 2>&1 || rc=$?
[[ $rc -eq 64 ]] && pass || { fail "shared GPU with --backend nccl: exit $rc, expected 64"; cat "$d/share.log" >&2; }
grep -q "would share GPU" "$d/share.log" && pass || fail "shared GPU: no 'would share GPU' message"
[[ ! -e "$d/out-share" ]] && pass || fail "shared GPU: output written"
timeout 120 mpirun -np 2 "$d/share.sh" "$tool" --old "$cfg/old.json" --new "$cfg/new.json" --input "$d/in" \
  --output "$d/out-share-auto" >"$d/share-auto.log" 2>&1 && pass || { fail "shared GPU, auto"; cat "$d/share-auto.log" >&2; }
grep -q "backend: mpi (auto: all 2 processes on one node; disk to disk" "$d/share-auto.log" && pass || fail "auto on one node did not take MPI with the reason"
finish
