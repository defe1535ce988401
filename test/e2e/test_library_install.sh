#!/usr/bin/env bash
# The in-server library as a consumer meets it (issue 21, item 2 and 3): `cmake --install`
# puts the headers, libeplb.so/libeplb_mpi.so, eplbConfig.cmake and eplb.pc under a prefix;
# a C program built through find_package(eplb), one built through pkg-config, and the
# Python package installed with pip each load the installed library and call it.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
build=$(cd "$(dirname "$tool")/.." && pwd)
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 && pass || { fail "cmake --install"; cat "$work/install.log" >&2; }
for f in include/eplb/eplb.h include/eplb/eplb_mpi.h lib/libeplb.so lib/libeplb.so.0 lib/libeplb_mpi.so \
         lib/cmake/eplb/eplbConfig.cmake lib/cmake/eplb/eplbConfigVersion.cmake lib/pkgconfig/eplb.pc; do
  [[ -e $prefix/$f ]] && pass || fail "not installed: $f"
done
# Only eplb_* leaves the library: our static libraries' symbols (fmt, eplb::) stay inside.
others=$(nm -D --defined-only "$prefix/lib/libeplb.so" | awk '{print $3}' | grep -v '^eplb_' | grep -vE '^(_init|_fini|__bss_start|_edata|_end)$' || true)
[[ -z $others ]] && pass || fail "libeplb.so exports more than eplb_*: $(echo "$others" | head -5)"
! ldd "$prefix/lib/libeplb.so" | grep -q libmpi && pass || fail "libeplb.so links MPI"

mkdir -p "$work/consumer"
cat >"$work/consumer/main.c" <<'C'
#include <stdio.h>
#include "eplb/eplb.h"
int main(void) {
  const int64_t old_map[4] = {0, 1, 2, 3}, new_map[4] = {2, 1, 0, 3};
  eplb_plan_t plan = NULL;
  if (eplb_version() != EPLB_VERSION) return 2;
  if (eplb_plan_create(old_map, 2, 2, new_map, 2, 2, 1, NULL, 0, &plan) != EPLB_OK) return 3;
  eplb_plan_stats stats;
  eplb_plan_stats_get(plan, &stats);
  printf("moved %lld\n", (long long)stats.experts_moved);
  eplb_plan_destroy(plan);
  return 0;
}
C
cat >"$work/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(eplb REQUIRED)
add_executable(consumer main.c)
target_link_libraries(consumer PRIVATE eplb::eplb)
CM
if cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/consumer.log" 2>&1 &&
   cmake --build "$work/consumer/build" >>"$work/consumer.log" 2>&1; then pass; else fail "find_package(eplb) consumer"; cat "$work/consumer.log" >&2; fi
[[ $("$work/consumer/build/consumer" 2>&1) == "moved 2" ]] && pass || fail "find_package consumer: $("$work/consumer/build/consumer" 2>&1)"
# pkg-config, and the same program as C17 and C++17 (the header is both).
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
if cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags eplb) "$work/consumer/main.c" -o "$work/pc" \
     $(pkg-config --libs eplb) -Wl,-rpath,"$prefix/lib" 2>"$work/pc.log"; then pass; else fail "pkg-config build"; cat "$work/pc.log" >&2; fi
[[ $("$work/pc" 2>&1) == "moved 2" ]] && pass || fail "pkg-config consumer"
cp "$work/consumer/main.c" "$work/consumer/main.cpp"
c++ -std=c++17 -Wall -Wextra -Werror $(pkg-config --cflags eplb) -fsyntax-only "$work/consumer/main.cpp" 2>"$work/cxx.log" && pass || { fail "eplb.h as C++17"; cat "$work/cxx.log" >&2; }

# pip install ./python (pure Python: no compiler, no network), then the installed library.
py=/usr/bin/python3
if "$py" -m pip --version >/dev/null 2>&1; then
  if "$py" -m pip install --no-build-isolation --no-deps --target "$work/site" "$here/../../python" >"$work/pip.log" 2>&1; then pass; else fail "pip install ./python"; cat "$work/pip.log" >&2; fi
  out=$(cd "$work" && PYTHONPATH=$work/site EPLB_LIBRARY=$prefix/lib "$py" -c 'import eplb_rebalance as e; l = e.library(); print(l.eplb_version(), l.eplb_build_info().decode())' 2>&1)
  [[ $out == "200 eplb 0.2.0"* ]] && pass || fail "the installed package did not load the library: $out"
  # Without EPLB_LIBRARY and nowhere to be found: a clear error naming the variable (unless
  # a package installed the library system-wide on this machine).
  if ! ldconfig -p 2>/dev/null | grep -q 'libeplb\.so' && [[ ! -e /usr/local/lib/libeplb.so ]]; then
    out=$(cd "$work" && PYTHONPATH=$work/site LD_LIBRARY_PATH= "$py" -c 'import eplb_rebalance as e; e.library()' 2>&1 || true)
    [[ $out == *"set EPLB_LIBRARY"* ]] && pass || fail "missing library: $out"
  fi
else
  echo "note: no pip for $py: the pip check is skipped"
fi
echo "$((checks - failures)) passed, $failures failed"
[[ $failures -eq 0 ]]
