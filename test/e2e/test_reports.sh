#!/usr/bin/env bash
# --json FILE on run, verify and generate: the documented keys (docs/CLI.md, "Reports"),
# on success and on failure, valid JSON whatever bytes the paths hold; -q and -v; the
# progress line.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
demo="$here/../../configs/demo"
tensors="w13:bf16:64x32,w2:bf16:32x32"
check() {  # check REPORT PYTHON-ASSERTIONS: runs them with `r` the parsed report
  /usr/bin/python3 - "$1" "$2" <<'PY' && pass || fail "report $1: $2"
import json, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))  # strict: invalid UTF-8 raises
exec(sys.argv[2])
PY
}
common='assert r["format"] == "eplb-report" and r["version"] == 1 and isinstance(r["options"], dict)'

expect_exit 0 "$work/gen.log" -- mpi 2 "$tool" generate --placement "$demo/old.json" \
  --tensors "$tensors" --seed 4 --output "$work/in" --json "$work/gen.json"
check "$work/gen.json" "$common"'
assert r["command"] == "generate" and r["result"] == "ok" and r["exit_code"] == 0
assert r["files"] == 4 and r["bytes"]["written"] == 4 * 4 * 3 * 6144, r["bytes"]
assert r["processes"] == 2 and r["memory"]["peak_rss_bytes"] > 0'

# run: plan summary, per-phase seconds, bytes, bandwidth, memory, and where each option
# came from.
expect_exit 0 "$work/run.log" -- mpi 4 "$tool" --old "$demo/old.json" --new "$demo/new.json" \
  --input "$work/in" --output "$work/out" --backend mpi --json "$work/run.json"
check "$work/run.json" "$common"'
assert r["command"] == "run" and r["result"] == "ok" and r["exit_code"] == 0 and "error" not in r
assert r["backend"] == "mpi" and r["backend_reason"] == "requested with --backend mpi", r
p = r["plan"]
assert p["num_layers"] == 4 and p["experts_moved"] == p["min_experts_required"] == 23 and p["messages"] == 18
s = r["seconds"]
assert set(s) == {"total", "plan", "setup", "read", "exchange", "write", "commit"}, s
assert all(v >= 0 for v in s.values()) and s["total"] >= s["plan"]
b = r["bytes"]
# On the wire: each expert's 6144 bytes and its two tensors' 8-byte checksums.
assert b["read"] == b["written"] == 4 * 4 * 3 * 6144 and b["sent"] == 23 * (6144 + 16), b
assert 0 < b["busiest_rank"] <= b["sent"]
assert r["bandwidth_bytes_per_s"]["end_to_end"] > 0
assert r["memory"]["peak_rss_bytes"] > 0
# MPI sets nothing up in the background (NCCL: test/gpu/test_nccl_rebalance.sh).
assert r["transport_setup"] == {"seconds": 0, "blocked_seconds": 0, "hidden_seconds": 0, "host_alloc_seconds": 0}, r["transport_setup"]
o = r["options"]
assert o["--backend"] == {"value": "mpi", "source": "command line"}, o["--backend"]
assert o["--timeout"]["source"] == "default" and o["--timeout"]["value"] == "600", o["--timeout"]
assert r["inputs"]["output"].endswith("/out")'

expect_exit 0 "$work/verify.log" -- mpi 2 "$tool" verify --checkpoint "$work/out" \
  --placement "$demo/new.json" --seed 4 --json "$work/verify.json"
check "$work/verify.json" "$common"'
assert r["command"] == "verify" and r["result"] == "ok" and r["slots_checked"] == 4 * 4 * 3
assert r["bytes"]["checked"] == 4 * 4 * 3 * 6144'

# Failures: the report is written too, with the exit code and the problems rank 0 saw.
expect_exit 2 "$work/f1.log" -- mpi 2 "$tool" --old "$work/missing.json" --new "$demo/new.json" \
  --input "$work/in" --output "$work/out2" --json "$work/f1.json"
expect_in "$work/f1.log" "--old: '$work/missing.json' does not exist"
check "$work/f1.json" "$common"'
assert r["result"] == "error" and r["exit_code"] == 2 and r["error"]["kind"] == "input"
assert any("missing.json" in p for p in r["error"]["problems"]), r["error"]'
expect_no_output "$work/out2"
expect_exit 5 "$work/f2.log" -- mpi 2 "$tool" verify --checkpoint "$work/out" \
  --placement "$demo/old.json" --json "$work/f2.json"
check "$work/f2.json" 'assert r["result"] == "error" and r["exit_code"] == 5 and r["error"]["kind"] == "verify"'
expect_exit 64 "$work/f3.log" -- "$tool" run --old "$demo/old.json" --json "$work/f3.json"
check "$work/f3.json" 'assert r["exit_code"] == 64 and r["error"]["kind"] == "usage"
assert any("--new" in p for p in r["error"]["problems"]), r["error"]'

# A path holding bytes that are not UTF-8 still gives valid JSON (U+FFFD in their place).
odd="$work/ck-$(printf '\xff\xfe')-x"
expect_exit 0 "$work/odd.log" -- mpi 2 "$tool" --old "$demo/old.json" --new "$demo/new.json" \
  --input "$work/in" --output "$odd" --json "$work/odd.json"
check "$work/odd.json" 'assert r["inputs"]["output"].endswith("/ck-\ufffd\ufffd-x"), r["inputs"]'
# --backend auto (the default), disk to disk on one node: MPI, and why (docs/CLI.md).
check "$work/odd.json" 'assert r["backend"] == "mpi" and r["backend_reason"].startswith("auto: all 2 processes on one node; disk to disk"), r["backend_reason"]'
expect_in "$work/odd.log" "backend: mpi (auto: all 2 processes on one node; disk to disk the host path is faster than NCCL's host<->device copies (docs/PERFORMANCE.md))"
cp "$demo/old.json" "$work/old-$(printf '\xe9').json"
expect_exit 0 "$work/odd2.log" -- "$tool" plan --old "$work/old-$(printf '\xe9').json" \
  --new "$demo/new.json" --json "$work/odd2.json"
check "$work/odd2.json" 'assert r["plan"]["old"]["path"].endswith("/old-\ufffd.json")'

# -q: nothing on stdout; -v: per-phase detail; the progress line (forced: not a terminal).
rm -rf "$work/out"
expect_exit 0 "$work/q.log" -- mpi 2 "$tool" -q --old "$demo/old.json" --new "$demo/new.json" \
  --input "$work/in" --output "$work/out"
[[ ! -s "$work/q.log" ]] && pass || fail "-q printed: $(cat "$work/q.log")"
rm -rf "$work/out"
expect_exit 0 "$work/v.log" -- mpi 2 env EPLB_PROGRESS=lines "$tool" --old "$demo/old.json" \
  --new "$demo/new.json" --input "$work/in" --output "$work/out" -v
expect_in "$work/v.log" "planned: 23 experts to move in 18 messages"
expect_in "$work/v.log" "layer 3: read 36864 B"
rm -rf "$work/out"
expect_exit 0 "$work/p.log" -- mpi 2 env EPLB_PROGRESS=redraw "$tool" --old "$demo/old.json" \
  --new "$demo/new.json" --input "$work/in" --output "$work/out"
expect_in "$work/p.log" "rebalance: layer 4/4 (100%), 288 KiB"
# -q wins over -v (EPLB_VERBOSE=1 set for a job, -q on one command).
expect_exit 0 "$work/qv.log" -- env EPLB_VERBOSE=1 "$tool" -q plan --old "$demo/old.json" --new "$demo/new.json"
[[ ! -s "$work/qv.log" ]] && pass || fail "-q with EPLB_VERBOSE=1 printed: $(cat "$work/qv.log")"
finish
