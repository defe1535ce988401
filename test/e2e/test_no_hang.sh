#!/usr/bin/env bash
# No hang: a peer that stops responding (EPLB_FAULT_STALL=RANK:LAYER, a stuck process, not
# a dead one) makes the others give up after --timeout and abort the job with exit 4,
# naming the phase; the output name stays untouched and the input unchanged. The same for
# a process frozen in MPI start-up.
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
finish
