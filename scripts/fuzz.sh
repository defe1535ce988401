#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz/, clang, ASan + UBSan) into build-fuzz/ and runs
# each for a while from its seed corpus (test/fuzz/corpus/<name>/, never modified: new
# inputs go to build-fuzz/corpus/<name>/). Called by scripts/test.sh; docs/RELIABILITY.md
# "Fuzzing" has the CI budget.
#
# Each target runs in libFuzzer's fork mode, so a finding does not end the run. Every
# finding is replayed in a fresh process and triaged:
#   - crash, timeout (hang), slow unit or memory blow-up (-rss_limit_mb): by the stack of
#     the replay (for a blow-up, of the replay's timeout, which comes first). One whose first frame
#     past libc, libstdc++, libFuzzer and the sanitizer runtime is inside libhdf5 is an
#     HDF5 defect on a corrupt file (listed, not a failure: no caller can prevent it); a
#     hang or slow unit that runs clean on replay was machine load (listed); anything else
#     fails the script.
#   - leak, anything else: fails the script. HDF5's known
#     leaks never get here: fuzz_shard suppresses them by the HDF5 function on the leaked
#     block's allocation stack (H5F_open, H5O_protect: see test/fuzz/fuzz_shard.cpp, with
#     a reproducer in test/fuzz/hdf5/), so any leak reported is one to look at.
# Every sanitizer report of the run is kept (build-fuzz/findings/<target>/reports/) and the
# reports of a failing target are printed: a finding that does not recur on replay still
# shows its stack. Inputs are kept in build-fuzz/findings/<target>/.
#   usage: scripts/fuzz.sh [target...]        (default: every target)
#   EPLB_FUZZ_SECONDS=60: time per target.
#   EPLB_FUZZ_SEED: libFuzzer's -seed (default: a new one each run, printed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-fuzz"
seconds=${EPLB_FUZZ_SECONDS:-60}
seed=${EPLB_FUZZ_SEED:-$(((RANDOM << 15 | RANDOM) + 1))}
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(fuzz_placement fuzz_manifest fuzz_shard fuzz_parse_header fuzz_hf_model fuzz_loads)
fi
launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DEPLB_FUZZ=ON -DEPLB_WITH_NCCL=OFF -DEPLB_BUILD_TESTS=OFF \
  "${launcher[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

# "hdf5" when the first stack frame of report $1 past libc, libstdc++, libFuzzer and the
# sanitizer runtime (its interceptors, malloc and free among them) is inside libhdf5, else
# "ours" (also when no frame is shown).
stack_site() {
  local frame
  frame=$(grep -E '^ +#[0-9]+ ' "$1" |
    grep -vE 'libc\.so|libstdc\+\+|/sysdeps/|string/|stdlib/|nptl/|__interceptor_|__asan|__sanitizer|__ubsan|fuzzer::' |
    grep -vE ' in (malloc|calloc|realloc|free|aligned_alloc|posix_memalign|memalign) \(' |
    head -n 1 || true)
  if [[ $frame == *libhdf5* ]]; then echo hdf5; else echo ours; fi
}

# Replays input $2 with target $1 (output in $3, libFuzzer options after): "none" when it
# runs clean (a hang or slow unit that was machine load: -timeout is wall-clock time; or a
# crash that needs the state earlier inputs left in the process), else stack_site's answer.
crash_site() {
  local target=$1 input=$2 out=$3
  shift 3
  if "$target" -timeout=30 "$@" "$input" >"$out" 2>&1; then
    echo none
    return
  fi
  stack_site "$out"
}

failed=()
for target in "${targets[@]}"; do
  name=${target#fuzz_}
  findings="$build/findings/$target"
  rm -rf "$findings"
  mkdir -p "$build/corpus/$name" "$findings/reports"
  echo "fuzz: $target for ${seconds}s, seed $seed"
  status=0
  # Sanitizer reports go to files (one per process: fork mode's jobs are processes whose
  # own output libFuzzer does not keep).
  (cd "$findings" && ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_abort=1:log_path=$findings/reports/asan" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$findings/reports/ubsan" \
    "$build/bin/$target" "$build/corpus/$name" "$root/test/fuzz/corpus/$name" \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$seconds" \
    -seed="$seed" -timeout=20 -rss_limit_mb=2048 -artifact_prefix="$findings/") \
    >"$build/$target.log" 2>&1 || status=$?
  grep -E '^#[0-9]+: cov' "$build/$target.log" | tail -n 1 || true
  ours=0
  # Every sanitizer report of the run, triaged by its stack, whatever input it came from:
  # this also covers a crash that does not recur when its input is replayed alone.
  reports_ours=0
  for report in "$findings"/reports/*; do
    [[ -f $report ]] || continue
    # Only errors: a job's LeakSanitizer also writes the list of suppressions it used.
    grep -qE 'ERROR: |runtime error' "$report" || continue
    if [[ $(stack_site "$report") == ours ]]; then
      echo "fuzz: $target: FINDING (sanitizer report outside libhdf5): $report" >&2
      reports_ours=$((reports_ours + 1))
    fi
  done
  ours=$reports_ours
  for input in "$findings"/*; do
    [[ -f $input ]] || continue
    kind=$(basename "$input")
    kind=${kind%%-*}
    case $kind in
      crash | timeout | slow) site=$(crash_site "$build/bin/$target" "$input" "$input.replay") ;;
      # A memory blow-up: libFuzzer's report shows only its own watchdog thread. Replayed
      # with a short -timeout under a higher limit, it hangs first, and the timeout's stack
      # shows where the input was (seen: HDF5's H5HG_read copying a damaged heap object).
      oom) site=$(crash_site "$build/bin/$target" "$input" "$input.replay" -timeout=5 \
        -rss_limit_mb=4096) ;;
      *) site=ours ;;
    esac
    if [[ $site == hdf5 ]]; then
      echo "fuzz: $target: $kind inside libhdf5 (HDF5 defect, not ours): $input"
    elif [[ $site == none && $kind != crash ]]; then
      echo "fuzz: $target: a $kind that did not recur on replay (machine load): $input"
    elif [[ $site == none && $reports_ours == 0 ]]; then
      echo "fuzz: $target: a crash that did not recur on replay alone; every sanitizer report of the run is inside libhdf5: $input"
    else
      echo "fuzz: $target: FINDING ($kind): $input (replay: ${input}.replay)" >&2
      ours=$((ours + 1))
    fi
  done
  # In fork mode the fuzzer's exit status is its last job's (70 after a hang triaged above):
  # only a run that did not reach its end fails on it.
  if ((status != 0)) && ! grep -qE '^INFO: exiting: ' "$build/$target.log"; then
    echo "fuzz: $target: the fuzzer stopped early (exit $status)" >&2
    ours=$((ours + 1))
  fi
  if ((ours > 0)); then
    failed+=("$target")
    tail -n 40 "$build/$target.log"
    for report in "$findings"/reports/*; do
      [[ -f $report ]] || continue
      echo "--- $report"
      head -n 60 "$report"
    done
  fi
done
if ((${#failed[@]} > 0)); then
  echo "fuzz: findings in ${failed[*]} (inputs in $build/findings/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each (seed $seed), no findings in our code"
