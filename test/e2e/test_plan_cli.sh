#!/usr/bin/env bash
# `plan`: the human table and the --json object, as a plain process and under mpirun
# (only rank 0 prints), and the exit code for incompatible placements.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
demo="$here/../../configs/demo"
expect_exit 0 "$work/plan.log" -- "$tool" plan --old "$demo/old.json" --new "$demo/new.json"
expect_in "$work/plan.log" "experts moved: 23 (minimum the placements require: 23)"
expect_in "$work/plan.log" "traffic (experts, src row -> dst column, summed over layers)"
expect_in "$work/plan.log" "busiest sender"
expect_exit 0 "$work/plan.json" -- "$tool" plan --old "$demo/old.json" --new "$demo/new.json" --json
python3 - "$work/plan.json" <<'PY' && pass || fail "plan --json content"
import json, sys
p = json.load(open(sys.argv[1]))
ranks = p["ranks"]
assert [r["rank"] for r in ranks] == [0, 1, 2, 3], ranks
for key in ("experts_sent", "experts_received", "messages_sent", "messages_received"):
    assert all(isinstance(r[key], int) for r in ranks), key
sent = sum(r["experts_sent"] for r in ranks)
received = sum(r["experts_received"] for r in ranks)
assert sent == received == p["totals"]["experts_moved"] == p["totals"]["min_experts_required"] == 23
assert sum(map(sum, p["traffic"])) == 23
assert sum(r["messages_sent"] for r in ranks) == sum(r["messages_received"] for r in ranks) == 18
PY
# Under mpirun every rank plans, rank 0 alone prints: one JSON object.
expect_exit 0 "$work/plan-mpi.json" -- mpi 2 "$tool" plan --old "$demo/old.json" --new "$demo/new.json" --json
python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$work/plan-mpi.json" && pass || fail "mpirun plan --json is not one JSON object"
# Incompatible placements: exit 2, the problem named.
python3 "$here/placements.py" vector invalid "$work"
expect_exit 2 "$work/bad.log" -- "$tool" plan --old "$work/old.json" --new "$work/new.json"
expect_in "$work/bad.log" "logical expert 4"
finish
