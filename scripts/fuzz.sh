#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz/, clang, ASan + UBSan) into build-fuzz/ and runs
# each for a while from its seed corpus (test/fuzz/corpus/<name>/, never modified: new
# inputs go to build-fuzz/corpus/<name>/). Called by scripts/test.sh; docs/RELIABILITY.md
# "Fuzzing" has the CI budget.
#
# Each target runs in libFuzzer's fork mode, so a finding does not end the run. Every crash
# and hang (-timeout) input is replayed and triaged by its stack: one whose first frame past
# libc, libstdc++, libFuzzer and the sanitizer runtime is inside libhdf5 is an HDF5 defect
# on a corrupt file (listed, not a failure: no caller can prevent it); anything else, and
# every leak and memory blow-up (-rss_limit_mb), fails the script. Inputs are kept in
# build-fuzz/findings/<target>/.
#   usage: scripts/fuzz.sh [target...]        (default: every target)
#   EPLB_FUZZ_SECONDS=60: time per target.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-fuzz"
seconds=${EPLB_FUZZ_SECONDS:-60}
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(fuzz_placement fuzz_manifest fuzz_shard fuzz_parse_header)
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DEPLB_FUZZ=ON -DEPLB_WITH_NCCL=OFF -DEPLB_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

# Replays input $2 with target $1: "none" when it runs clean (a hang that was machine load,
# -timeout being wall-clock time), "hdf5" when it crashes or hangs inside libhdf5, else "ours".
crash_site() {
  local out frame
  if out=$("$1" -timeout=30 "$2" 2>&1); then
    echo none
    return
  fi
  frame=$(echo "$out" | grep -E '^ +#[0-9]+ ' |
    grep -vE 'libc\.so|libstdc\+\+|/sysdeps/|string/|stdlib/|nptl/|__interceptor_|__asan|__sanitizer|__ubsan|fuzzer::' |
    head -n 1 || true)
  if [[ $frame == *libhdf5* ]]; then echo hdf5; else echo ours; fi
}

failed=()
for target in "${targets[@]}"; do
  name=${target#fuzz_}
  findings="$build/findings/$target"
  rm -rf "$findings"
  mkdir -p "$build/corpus/$name" "$findings"
  echo "fuzz: $target for ${seconds}s"
  status=0
  (cd "$findings" && "$build/bin/$target" "$build/corpus/$name" "$root/test/fuzz/corpus/$name" \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$seconds" \
    -timeout=20 -rss_limit_mb=2048 -artifact_prefix="$findings/") >"$build/$target.log" 2>&1 ||
    status=$?
  grep -E '^#[0-9]+: cov' "$build/$target.log" | tail -n 1 || true
  ours=0
  for input in "$findings"/*; do
    [[ -e $input ]] || continue
    kind=$(basename "$input")
    kind=${kind%%-*}
    site=ours
    if [[ $kind == crash || $kind == timeout ]]; then site=$(crash_site "$build/bin/$target" "$input"); fi
    if [[ $site == hdf5 ]]; then
      echo "fuzz: $target: $kind inside libhdf5 (HDF5 defect, not ours): $input"
    elif [[ $site == none && $kind == timeout ]]; then
      echo "fuzz: $target: a hang that did not recur on replay (machine load?): $input"
    else
      echo "fuzz: $target: FINDING ($kind): $input" >&2
      ours=$((ours + 1))
    fi
  done
  if ((status != 0 || ours > 0)); then
    failed+=("$target")
    tail -n 40 "$build/$target.log"
  fi
done
if ((${#failed[@]} > 0)); then
  echo "fuzz: findings in ${failed[*]} (inputs in $build/findings/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each, no findings in our code"
