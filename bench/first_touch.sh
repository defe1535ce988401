#!/usr/bin/env bash
# What fresh memory costs on this machine: first touch of 1 GiB of anonymous memory (4 KiB
# pages, then transparent huge pages), twice each in one process, against a memset of the
# same memory once it is resident. On a VM whose host backs guest memory lazily the first
# touch can cost seconds per GiB; a pipeline's staging buffers pay it once per run
# (docs/perf-log/2026-11-29-copy-cpu-on-the-vm.md).
#   usage: bench/first_touch.sh [GiB]
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/t.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char** argv) {
  size_t n = (size_t)atoi(argv[1]) << 30;
  for (int huge = 0; huge < 2; ++huge) {
    for (int round = 1; round <= 2; ++round) {
      char* p = aligned_alloc(2 << 20, n);
      if (huge) madvise(p, n, MADV_HUGEPAGE);
      double t0 = now();
      for (size_t i = 0; i < n; i += 4096) p[i] = 1;
      double t1 = now();
      memset(p, 2, n);
      double t2 = now();
      printf("%s pages, round %d: first touch %.2f s (%.2f GB/s); memset once resident %.2f s\n",
             huge ? "huge" : "4 KiB", round, t1 - t0, n / (t1 - t0) / 1e9, t2 - t1);
      free(p);
    }
  }
  return 0;
}
C
cc -O2 -o "$tmp/t" "$tmp/t.c"
"$tmp/t" "${1:-1}"
