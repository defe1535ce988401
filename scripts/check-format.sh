#!/usr/bin/env bash
# clang-format (the checked-in .clang-format) on the C++/CUDA files changed relative to the
# merge base with origin/main, or to HEAD~ where there is no such remote (a fresh clone in
# CI). Uncommitted changes count. Skips, with a note, where clang-format, git history or a
# git checkout is missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v clang-format >/dev/null 2>&1; then
  echo "check-format: clang-format not found, skipped" >&2
  exit 0
fi
cd "$root"
if base=$(git merge-base HEAD origin/main 2>/dev/null); then
  :
elif base=$(git rev-parse -q --verify 'HEAD~' 2>/dev/null); then
  :
else
  echo "check-format: no origin/main and no parent commit to compare with, skipped" >&2
  exit 0
fi
mapfile -t files < <(git diff --name-only --diff-filter=ACMR "$base" -- \
  '*.cpp' '*.hpp' '*.h' '*.cu' '*.cuh')
if [[ ${#files[@]} -eq 0 ]]; then
  exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "check-format: run clang-format -i on the files above" >&2
  exit 1
fi
echo "check-format: ${#files[@]} changed files formatted"
