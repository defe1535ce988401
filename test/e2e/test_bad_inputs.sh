#!/usr/bin/env bash
# Bad inputs and bad options (docs/RELIABILITY.md, cases B*): each is refused with the
# documented exit code and a plain message, in bounded time (no FIFO or /dev/zero hang),
# with the input byte-identical and nothing under the output name.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
d="$work"
python3 "$here/placements.py" random 13 2 3 5 2 "$d"
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "w:fp32:16" --seed 1 --output "$d/in" >/dev/null
in_hash=$(tree_hash "$d/in")
T=30

# bad CODE NAME TEXT -- args...: one process (input checks are rank 0's), under timeout.
bad() {
  local want=$1 name=$2 text=$3; shift 4
  expect_exit "$want" "$d/$name.log" -- timeout "$T" mpirun --oversubscribe -np 1 "$tool" "$@"
  expect_in "$d/$name.log" "$text"
  [[ "$(tree_hash "$d/in")" == "$in_hash" ]] && pass || fail "$name: input modified"
  [[ ! -e "$d/out" && -z "$(ls -A "$d" | grep -F '.out.eplb-')" ]] && pass || fail "$name: output or leftovers"
  echo "case $name: done"
}
args=(--old "$d/old.json" --new "$d/new.json" --input "$d/in" --output "$d/out")

# B1-B9: options.
bad 64 typo "unknown command 'rnu'; did you mean 'run'? the commands are run, plan, generate, verify, bench, import, export, balance, placement and inspect" -- rnu "${args[@]}"
bad 64 no-command "no command given" --
# The value of a top-level option is not taken for the command.
echo 'timeout = 30' > "$d/job.toml"
bad 64 typo-after-config "unknown command 'rnu'" -- -q --config "$d/job.toml" rnu "${args[@]}"
bad 64 config-then-verify "--checkpoint is required" -- --config "$d/job.toml" verify
for v in 0 -5 abc 1e-9; do
  bad 64 "timeout-$v" "--timeout: '$v' is not a number of seconds from 0.1 to 604800" -- "${args[@]}" --timeout "$v"
done
for v in 0 -1; do
  bad 64 "staging-$v" "--max-staging-bytes: '$v' is not a size from 1MiB to 1TiB" -- "${args[@]}" --max-staging-bytes "$v"
done
bad 64 missing-option "eplb-rebalance: error: " -- run --old "$d/old.json"

# B10-B12: the output's location.
echo x > "$d/file"
bad 64 parent-is-file "cannot create output '$d/file/out': '$d/file' is a file, not a directory" -- \
  --old "$d/old.json" --new "$d/new.json" --input "$d/in" --output "$d/file/out"
bad 64 parent-missing "cannot create output '$d/no/out': directory '$d/no' does not exist" -- \
  --old "$d/old.json" --new "$d/new.json" --input "$d/in" --output "$d/no/out"
bad 64 output-is-input "overlap" -- --old "$d/old.json" --new "$d/new.json" --input "$d/in" --output "$d/in/../in" --force

# B13-B18: placement and manifest files that are not regular files of bounded size.
mkfifo "$d/fifo"
bad 2 new-fifo "must be a regular file, but it is a FIFO" -- --old "$d/old.json" --new "$d/fifo" --input "$d/in" --output "$d/out"
bad 2 new-dev-zero "must be a regular file, but it is a character device" -- --old "$d/old.json" --new /dev/zero --input "$d/in" --output "$d/out"
bad 2 new-directory "must be a regular file, but it is a directory" -- --old "$d/old.json" --new "$d/in" --input "$d/in" --output "$d/out"
cp -a "$d/in" "$d/in-fifo"; rm "$d/in-fifo/manifest.json"; mkfifo "$d/in-fifo/manifest.json"
bad 2 manifest-fifo "must be a regular file, but it is a FIFO" -- --old "$d/old.json" --new "$d/new.json" --input "$d/in-fifo" --output "$d/out"
cp -a "$d/in" "$d/in-garbage"; echo '{"format": "eplb-manifest", "version": 1,' > "$d/in-garbage/manifest.json"
bad 2 manifest-garbage "malformed JSON" -- --old "$d/old.json" --new "$d/new.json" --input "$d/in-garbage" --output "$d/out"
cp -a "$d/in" "$d/in-dup"; sed -i '0,/"version": 1,/s//"version": 1, "version": 1,/' "$d/in-dup/manifest.json"
bad 2 manifest-duplicate-key 'duplicate key "version"' -- --old "$d/old.json" --new "$d/new.json" --input "$d/in-dup" --output "$d/out"

# B19-B22: bad placements.
printf '{"format":"eplb-placement","version":1,"ep_size":2,"physical_to_logical_map":[[0,1,2,99,4,0],[0,1,2,3,4,0]]}' > "$d/bad-id.json"
bad 2 placement-id-range "logical expert id 99 is out of range" -- --old "$d/old.json" --new "$d/bad-id.json" --input "$d/in" --output "$d/out"
printf '{"format":"eplb-placement","version":1,"ep_size":2,"ep_size":2,"physical_to_logical_map":[[0,1,2,3,4,0]]}' > "$d/dup.json"
bad 2 placement-duplicate-key 'duplicate key "ep_size"' -- --old "$d/old.json" --new "$d/dup.json" --input "$d/in" --output "$d/out"
printf '{"format":"eplb-placement","version":1,"ep_size":2,"physical_to_logical_map":[[0,1,2,3,4,"x"],[0,1,2,3,4,0]]}' > "$d/str.json"
bad 2 placement-not-integer 'expected an integer, got string "x"' -- --old "$d/old.json" --new "$d/str.json" --input "$d/in" --output "$d/out"
printf '{"format":"eplb-placement","version":1,"ep_size":3,"physical_to_logical_map":[[0,1,2,3,4,0],[0,1,2,3,4,0]]}' > "$d/ep3.json"
bad 2 placement-wrong-checkpoint "does not hold the old placement" -- --old "$d/ep3.json" --new "$d/new.json" --input "$d/in" --output "$d/out"

# B23-B24: corrupt shards: checked against the manifest (size, whole-file xxh3) before HDF5
# opens them, so HDF5 never parses the damage: exit 2 with the manifest's message, for run
# and verify (5, every problem of verify is a verification failure).
# hdf5_never_opened LOG: neither HDF5's words nor the reader's open error in the output.
hdf5_never_opened() {
  expect_not_in "$1" "cannot open shard"
  expect_not_in "$1" "HDF5"
  expect_not_in "$1" "H5F"
}
cp -a "$d/in" "$d/in-meta"; flip_byte "$d/in-meta/rank-00001.h5" 3   # superblock signature
cp -a "$d/in" "$d/in-ohdr"; flip_byte "$d/in-ohdr/rank-00000.h5" 96  # root object header: version
for v in meta ohdr; do
  for opt in "" --check-files; do
    bad 2 "shard-$v-byte$opt" "rank-0000" -- --old "$d/old.json" --new "$d/new.json" --input "$d/in-$v" --output "$d/out" $opt
    expect_in "$d/shard-$v-byte$opt.log" "whole-file xxh3"
    hdf5_never_opened "$d/shard-$v-byte$opt.log"
  done
  bad 5 "verify-$v-byte" "whole-file xxh3" -- verify --checkpoint "$d/in-$v"
  hdf5_never_opened "$d/verify-$v-byte.log"
done
cp -a "$d/in" "$d/in-trunc"; truncate -s 1000 "$d/in-trunc/rank-00000.h5"
bad 2 shard-truncated "'$d/in-trunc/rank-00000.h5' is 1000 bytes, but the manifest says" -- --old "$d/old.json" --new "$d/new.json" --input "$d/in-trunc" --output "$d/out"
hdf5_never_opened "$d/shard-truncated.log"
bad 5 verify-truncated "'$d/in-trunc/rank-00000.h5' is 1000 bytes, but the manifest says" -- verify --checkpoint "$d/in-trunc"
hdf5_never_opened "$d/verify-truncated.log"
# The damage behind a manifest that agrees with it (rewritten to match): HDF5 parses it
# and refuses it, still corrupt content (2), not I/O (3).
cp -a "$d/in-meta" "$d/in-meta-listed"; rehash_manifest "$d/in-meta-listed" rank-00001.h5
bad 2 shard-metadata-byte-listed "rank-00001.h5" -- --old "$d/old.json" --new "$d/new.json" --input "$d/in-meta-listed" --output "$d/out"
# B25-B26: a shard that cannot be read: I/O (3).
cp -a "$d/in" "$d/in-dir"; rm "$d/in-dir/rank-00001.h5"; mkdir "$d/in-dir/rank-00001.h5"
bad 3 shard-is-directory "rank-00001.h5" -- --old "$d/old.json" --new "$d/new.json" --input "$d/in-dir" --output "$d/out"
cp -a "$d/in" "$d/in-missing"; rm "$d/in-missing/rank-00000.h5"
bad 3 shard-missing "No such file or directory" -- --old "$d/old.json" --new "$d/new.json" --input "$d/in-missing" --output "$d/out"
finish
