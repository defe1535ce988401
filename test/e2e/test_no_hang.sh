#!/usr/bin/env bash
# No hang: a peer that stops responding (EPLB_FAULT_STALL=RANK:LAYER, a stuck process, not
# a dead one) makes the others give up after --timeout and abort the job with exit 4,
# naming the phase; the output name stays untouched and the input unchanged. The same for
# a process frozen in MPI start-up, and for HDF5 stuck on a damaged shard whose manifest
# entry matches it (with one process too, where no peer could notice); HDF5 crashing on one
# is named too.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
python3 "$here/placements.py" random 7 3 3 6 4 "$work"
mpi 3 "$tool" generate --placement "$work/old.json" --tensors "w:fp32:64,s:bf16:8" --seed 2 --output "$work/in" >/dev/null
before=$(tree_hash "$work/in")
for layer in 0 2; do
  start=$(date +%s)
  expect_exit 4 "$work/stall$layer.log" -- env EPLB_FAULT_STALL="1:$layer" timeout 120 \
    mpirun --oversubscribe -np 3 "$tool" --old "$work/old.json" --new "$work/new.json" --allow-dropping-experts \
    --input "$work/in" --output "$work/out" --backend mpi --timeout 3
  elapsed=$(( $(date +%s) - start ))
  [[ $elapsed -lt 60 ]] && pass || fail "layer $layer: took $elapsed s to give up"
  expect_in "$work/stall$layer.log" "timed out after 3 s"
  [[ ! -e "$work/out" ]] && pass || fail "layer $layer: output exists after an aborted run"
  [[ "$(tree_hash "$work/in")" == "$before" ]] && pass || fail "layer $layer: input modified"
  expect_in "$work/stall$layer.log" "layer $layer: "  # the phase
  # An aborted job may leave its staging directory and lock: the next run recovers them.
done
# A process frozen during MPI start-up (EPLB_FAULT_STALL_STARTUP=RANK): MPI_Init cannot be
# polled, so a watchdog under --timeout ends the job with exit 4, for every subcommand.
for command in run verify; do
  if [[ $command == run ]]; then
    args=(--old "$work/old.json" --new "$work/new.json" --input "$work/in" --output "$work/out")
  else
    args=(verify --checkpoint "$work/in")
  fi
  start=$(date +%s)
  expect_exit 4 "$work/startup-$command.log" -- env EPLB_FAULT_STALL_STARTUP=2 timeout 120 \
    mpirun --oversubscribe -np 3 "$tool" "${args[@]}" --timeout 3
  elapsed=$(( $(date +%s) - start ))
  [[ $elapsed -lt 60 ]] && pass || fail "$command: took $elapsed s to give up in start-up"
  expect_in "$work/startup-$command.log" "MPI start-up did not finish within 3 s"
  [[ ! -e "$work/out" ]] && pass || fail "$command: output exists after a failed start-up"
done
[[ "$(tree_hash "$work/in")" == "$before" ]] && pass || fail "input modified by start-up stalls"
expect_exit 0 "$work/rerun.log" -- timeout 120 mpirun --oversubscribe -np 3 "$tool" --old "$work/old.json" \
  --new "$work/new.json" --allow-dropping-experts --input "$work/in" --output "$work/out" --backend mpi --timeout 30
[[ -z "$(ls -A "$work" | grep -F .out.eplb-)" ]] && pass || fail "leftovers after the re-run"

# HDF5 stuck on a damaged shard: test/data/shards/hdf5-stuck-global-heap.h5 (a fuzz_shard
# finding) makes H5Aread loop for good in the global heap while reading a string attribute.
# Its manifest entry is rewritten to match it (the damage came before the manifest), so the
# size and xxh3 checks let it through to HDF5. Every command that opens it ends with exit 4
# within --timeout, the stuck rank naming the file; nothing is written.
d="$work/stuck"; mkdir -p "$d"
cat >"$d/p.json" <<'EOF'
{"format": "eplb-placement", "version": 1, "ep_size": 2, "num_slots_per_rank": 3,
 "physical_to_logical_map": [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]]}
EOF
cat >"$d/p2.json" <<'EOF'
{"format": "eplb-placement", "version": 1, "ep_size": 2, "num_slots_per_rank": 3,
 "physical_to_logical_map": [[1, 0, 2, 3, 4, 5], [5, 4, 3, 2, 0, 1]]}
EOF
mpi 2 "$tool" generate --placement "$d/p.json" --tensors "w1:bf16:4x2,scale:fp32:3" --seed 1 --output "$d/ck" >/dev/null
cp "$here/../data/shards/hdf5-stuck-global-heap.h5" "$d/ck/rank-00000.h5"
rehash_manifest "$d/ck" rank-00000.h5
stuck_before=$(tree_hash "$d/ck")
stuck_case() {  # stuck_case NAME NP ARGS...: exit 4 within 30 s, naming the stuck file
  local name=$1 np=$2 start elapsed
  shift 2
  start=$(date +%s)
  expect_exit 4 "$d/$name.log" -- timeout -k 5 60 mpirun --oversubscribe -np "$np" "$tool" "$@" --timeout 3
  elapsed=$(($(date +%s) - start))
  [[ $elapsed -lt 30 ]] && pass || fail "$name: took $elapsed s to give up"
  expect_in "$d/$name.log" "[rank 0/$np $(hostname)] opening '$d/ck/rank-00000.h5' did not finish within --timeout 3 s"
  [[ "$(tree_hash "$d/ck")" == "$stuck_before" ]] && pass || fail "$name: checkpoint modified"
  [[ ! -e "$d/out" ]] && pass || fail "$name: output exists after the stuck run"
}
stuck_case verify-np1 1 verify --checkpoint "$d/ck"
stuck_case verify-np2 2 verify --checkpoint "$d/ck"
stuck_case run-np1 1 --old "$d/p.json" --new "$d/p2.json" --input "$d/ck" --output "$d/out" --backend mpi
stuck_case run-np2 2 --old "$d/p.json" --new "$d/p2.json" --input "$d/ck" --output "$d/out" --backend mpi
stuck_case in-place-np2 2 run --in-place --old "$d/p.json" --new "$d/p2.json" --input "$d/ck" --backend mpi

# HDF5 crashing on a damaged shard (test/data/shards/hdf5-crash-global-heap.h5, a fuzz_shard
# finding: a SIGSEGV in H5HG_read), its manifest entry matching it: the rank says which file
# it was opening before the launcher's report; the job dies by the signal (139); nothing is
# written.
cp "$here/../data/shards/hdf5-crash-global-heap.h5" "$d/ck/rank-00000.h5"
rehash_manifest "$d/ck" rank-00000.h5
crash_before=$(tree_hash "$d/ck")
for np in 1 2; do
  expect_exit 139 "$d/crash-np$np.log" -- timeout -k 5 60 mpirun --oversubscribe -np "$np" "$tool" verify \
    --checkpoint "$d/ck" --timeout 20
  expect_in "$d/crash-np$np.log" "[rank 0/$np $(hostname)] crashed (SIGSEGV) while opening '$d/ck/rank-00000.h5'"
  expect_exit 139 "$d/crash-run-np$np.log" -- timeout -k 5 60 mpirun --oversubscribe -np "$np" "$tool" \
    --old "$d/p.json" --new "$d/p2.json" --input "$d/ck" --output "$d/out" --backend mpi --timeout 20
  expect_in "$d/crash-run-np$np.log" "crashed (SIGSEGV) while opening '$d/ck/rank-00000.h5'"
  [[ ! -e "$d/out" ]] && pass || fail "crash np $np: output exists"
done
[[ "$(tree_hash "$d/ck")" == "$crash_before" ]] && pass || fail "crash: checkpoint modified"
finish
