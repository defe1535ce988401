# Shared by the end-to-end tests: sourced, with the binary's path as $1 of the test.
set -euo pipefail
tool=$(realpath "${1:?usage: $0 path/to/eplb-rebalance}")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Keep Open MPI from probing network interfaces it cannot use in containers.
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
work=$(mktemp -d "${TMPDIR:-/tmp}/eplb-e2e.XXXXXX")
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT
# Open MPI's session directory per test: concurrent mpiruns (ctest -j) sharing
# /tmp/ompi.HOST.UID race when one removes it while another creates its own inside.
mkdir -p "$work/ompi" && export OMPI_MCA_orte_tmpdir_base="$work/ompi"
failures=0
checks=0

mpi() { local np=$1; shift; mpirun --oversubscribe -np "$np" "$@"; }

pass() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL: $*" >&2; }

# expect_exit CODE LOGFILE -- command...: runs the command, records its output in LOGFILE.
expect_exit() {
  local want=$1 log=$2; shift 3
  local rc=0
  "$@" >"$log" 2>&1 || rc=$?
  if [[ $rc -eq $want ]]; then pass; else fail "exit $rc, expected $want: $*"; sed 's/^/    /' "$log" >&2; fi
}

expect_in() {  # expect_in LOGFILE TEXT
  if grep -qF -- "$2" "$1"; then pass; else fail "'$2' not in output of $1"; sed 's/^/    /' "$1" >&2; fi
}

expect_not_in() {  # expect_not_in LOGFILE TEXT
  if ! grep -qF -- "$2" "$1"; then pass; else fail "'$2' in output of $1"; sed 's/^/    /' "$1" >&2; fi
}

# rehash_manifest DIR NAME...: the manifest's size and whole-file xxh3 of each named shard
# set to what the file holds now, so that a shard changed on purpose passes the manifest
# check and reaches the checks behind it (attributes, tensors, row checksums).
rehash_manifest() {
  /usr/bin/python3 - "$@" <<'PY'
import ctypes, json, sys
d, names = sys.argv[1], sys.argv[2:]
xxh3 = ctypes.CDLL("libxxhash.so.0").XXH3_64bits  # Debian's libxxhash, as the tool uses
xxh3.restype, xxh3.argtypes = ctypes.c_uint64, [ctypes.c_char_p, ctypes.c_size_t]
m = json.load(open(f"{d}/manifest.json"))
for entry in m["files"]:
    if entry["name"] in names:
        data = open(f"{d}/{entry['name']}", "rb").read()
        entry["size"], entry["xxh3"] = len(data), "%016x" % xxh3(data, len(data))
json.dump(m, open(f"{d}/manifest.json", "w"))
PY
}

# flip_byte FILE OFFSET: one bit of one byte flipped, the size unchanged.
flip_byte() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    at = int(sys.argv[2]); f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x20]))
PY
}

# Every attribute of a shard but the root's checkpoint_id, as h5dump prints them.
shard_attributes() {
  h5dump -A "$1" | sed '1d' | sed '/^   ATTRIBUTE "checkpoint_id" {/,/^   }/d'
}

# Byte-for-byte comparison of two checkpoints' shards, by h5diff and h5dump (not our code).
# The shards' checkpoint_id differs between checkpoints made by different commands (it is
# derived from each one's inputs), so the root's attributes are compared without it.
expect_same_checkpoint() {
  local a=$1 b=$2 f
  for f in "$b"/rank-*.h5; do
    if h5diff -q --exclude-attribute / "$a/$(basename "$f")" "$f" >/dev/null 2>&1 &&
      [[ "$(shard_attributes "$a/$(basename "$f")")" == "$(shard_attributes "$f")" ]]; then pass
    else fail "$a/$(basename "$f") differs from $f"; fi
  done
  local na nb
  na=$(ls "$a"/rank-*.h5 | wc -l); nb=$(ls "$b"/rank-*.h5 | wc -l)
  [[ $na -eq $nb ]] && pass || fail "$a has $na shards, $b has $nb"
}

tree_hash() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum); }

# wait_launcher PID RANKS: waits for a background mpirun job (PID: the job's shell) after
# one of its ranks was killed from outside; RANKS is a pgrep -f pattern that matches the
# ranks and not mpirun. Open MPI 4.1's mpirun (Debian 12's) can deadlock in
# PMIx_server_finalize when a rank dies while it connects in MPI_Init: every rank has
# exited, yet mpirun ignores SIGTERM and never returns (docs/RELIABILITY.md, "The
# launcher"). That is a defect of the launcher, not a hang of the tool: 10 s after the last
# rank exited, whatever still runs under the job is killed and a note says so. Ranks
# still alive are left alone here: the run's own timeout and the caller's checks judge them.
wait_launcher() {
  local pid=$1 ranks=$2 idle=0
  while kill -0 "$pid" 2>/dev/null; do
    if pgrep -f -- "$ranks" >/dev/null; then idle=0; else idle=$((idle + 1)); fi
    if ((idle == 100)); then
      echo "note: mpirun still running 10 s after its last rank exited (Open MPI's PMIx finalize deadlock): killed"
      kill -9 $(descendants "$pid") 2>/dev/null || true
    fi
    sleep 0.1
  done
  wait "$pid" || true
}

descendants() {  # descendants PID: every process below PID, children first
  local c
  for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done
}

expect_no_output() {  # nothing under the output name, no staging left next to it
  local out=$1
  [[ ! -e $out ]] && pass || fail "output $out exists after a failed run"
  local staging
  staging="$(dirname "$out")/.$(basename "$out").eplb-staging"
  [[ ! -e $staging ]] && pass || fail "staging $staging left behind"
}

finish() {
  echo "$((checks - failures)) passed, $failures failed"
  [[ $failures -eq 0 ]]
}
