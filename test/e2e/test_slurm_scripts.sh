#!/usr/bin/env bash
# scripts/slurm/: every example parses, every srun names --mpi=pmix, and the CPU ones run
# as written here, with a stand-in `srun` (there is no slurm on CI machines) that insists
# on --mpi=pmix and starts the tasks with mpirun. Also: tasks that srun started without
# an MPI plugin get exit 4 and the hint, before MPI_Init.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
scripts="$here/../../scripts/slurm"
for f in srun-pmix.sbatch mpirun-in-allocation.sbatch cpu-ci.sbatch gpu-per-task.sbatch; do
  [[ -f "$scripts/$f" ]] && bash -n "$scripts/$f" && pass || fail "$f missing or does not parse"
  if grep -E '^\s*srun ' "$scripts/$f" | grep -vq -- '--mpi=pmix'; then fail "$f: srun without --mpi=pmix"; else pass; fi
done
[[ ! -e "$here/../../scripts/slurm-example.sbatch" ]] && pass || fail "old example still there"

mkdir -p "$work/bin"
cat > "$work/bin/srun" <<'SH'
#!/usr/bin/env bash
[[ "${1:-}" == "--mpi=pmix" ]] || { echo "stand-in srun: expected --mpi=pmix first, got: $*" >&2; exit 99; }
shift
exec mpirun --oversubscribe -np "${SLURM_NTASKS:?}" "$@"
SH
chmod +x "$work/bin/srun"
export PATH="$work/bin:$PATH" EPLB_TOOL="$tool" SLURM_JOB_ID=4242 SLURM_NTASKS=4 SLURM_NTASKS_PER_NODE=4
repo=$(cd "$here/../.." && pwd)

# The CPU-only CI job, as written (from the repository root, as sbatch would be run).
expect_exit 0 "$work/ci.log" -- bash -c "cd '$repo' && WORK='$work/ci' bash scripts/slurm/cpu-ci.sbatch"
/usr/bin/python3 - "$work/ci" <<'PY' && pass || fail "cpu-ci reports"
import json, sys
for name in ("generate", "run", "verify"):
    r = json.load(open(f"{sys.argv[1]}/{name}.json"))
    assert r["result"] == "ok" and r["processes"] == 4, (name, r["result"])
run = json.load(open(f"{sys.argv[1]}/run.json"))
assert run["backend"] == "mpi" and run["options"]["--backend"]["source"].startswith("config "), run["options"]
PY

# srun --mpi=pmix and mpirun in an allocation, on a checkpoint with its placements.
"$tool" generate --placement "$repo/configs/demo/old.json" --tensors "w13:bf16:64x32" --output "$work/ckpt" >/dev/null
cp "$repo/configs/demo/old.json" "$repo/configs/demo/new.json" "$work/ckpt/"
expect_exit 0 "$work/srun.log" -- bash -c "cd '$work' && EPLB_INPUT='$work/ckpt' EPLB_OUTPUT='$work/out1' bash '$scripts/srun-pmix.sbatch'"
expect_in "$work/srun.log" "verified 4 shards"
expect_exit 0 "$work/mpirun.log" -- bash -c "cd '$work' && EPLB_INPUT='$work/ckpt' EPLB_OUTPUT='$work/out2' bash '$scripts/mpirun-in-allocation.sbatch'"
expect_in "$work/mpirun.log" "verified 4 shards"
expect_same_checkpoint "$work/out1" "$work/out2"

# srun without a usable MPI plugin: every task stops before MPI_Init, exit 4, with the fix.
expect_exit 4 "$work/nopmi.log" -- env -u OMPI_COMM_WORLD_RANK SLURM_PROCID=1 SLURM_STEP_NUM_TASKS=8 \
  SLURM_MPI_TYPE=pmi2 "$tool" plan --old "$repo/configs/demo/old.json" --new "$repo/configs/demo/new.json"
expect_in "$work/nopmi.log" "srun started 8 tasks without an MPI plugin this Open MPI can use (SLURM_MPI_TYPE=pmi2): pass --mpi=pmix"
# One task alone is a plain singleton: fine.
expect_exit 0 "$work/one.log" -- env SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=1 \
  "$tool" plan --old "$repo/configs/demo/old.json" --new "$repo/configs/demo/new.json"
finish
