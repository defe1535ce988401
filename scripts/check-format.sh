#!/usr/bin/env bash
# clang-format (the checked-in .clang-format) on the C++/CUDA files changed relative to the
# merge base with origin/main; on main itself (or with no such remote, as in a fresh clone
# without one) relative to HEAD~, i.e. the files of the last commit; and on every tracked
# file where there is no parent commit either (a shallow clone of depth 1). Uncommitted
# changes count. Skips, with a note, where clang-format or a git checkout is missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v clang-format >/dev/null 2>&1; then
  echo "check-format: clang-format not found, skipped" >&2
  exit 0
fi
cd "$root"
if ! git rev-parse -q --verify HEAD >/dev/null 2>&1; then
  echo "check-format: not a git checkout, skipped" >&2
  exit 0
fi
patterns=('*.cpp' '*.hpp' '*.h' '*.cu' '*.cuh')
head=$(git rev-parse HEAD)
base=$(git merge-base HEAD origin/main 2>/dev/null || true)
if [[ -z $base || $base == "$head" ]]; then
  base=$(git rev-parse -q --verify 'HEAD~' 2>/dev/null || true)
fi
if [[ -n $base ]]; then
  mapfile -t files < <(git diff --name-only --diff-filter=ACMR "$base" -- "${patterns[@]}")
else
  echo "check-format: no parent commit to compare with (shallow clone): every file" >&2
  mapfile -t files < <(git ls-files -- "${patterns[@]}")
fi
if [[ ${#files[@]} -eq 0 ]]; then
  exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "check-format: run clang-format -i on the files above" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted"
