#!/usr/bin/env bash
# `plan`: the human table and the --json report, as a plain process and under mpirun
# (only rank 0 writes), the --svg picture's content, and the exit code for incompatible
# placements.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
demo="$here/../../configs/demo"
expect_exit 0 "$work/plan.log" -- "$tool" plan --old "$demo/old.json" --new "$demo/new.json"
expect_in "$work/plan.log" "experts moved: 23 (minimum the placements require: 23)"
expect_in "$work/plan.log" "traffic (experts, src row -> dst column, summed over layers)"
expect_in "$work/plan.log" "busiest sender"
expect_exit 0 "$work/plan.json" -- "$tool" plan --old "$demo/old.json" --new "$demo/new.json" --json -
/usr/bin/python3 - "$work/plan.json" <<'PY' && pass || fail "plan --json content"
import json, sys
report = json.load(open(sys.argv[1]))
assert report["command"] == "plan" and report["result"] == "ok" and report["exit_code"] == 0
p = report["plan"]
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
# Under mpirun every rank plans, rank 0 alone writes: one JSON object.
expect_exit 0 "$work/plan-mpi.json" -- mpi 2 "$tool" plan --old "$demo/old.json" --new "$demo/new.json" --json -
/usr/bin/python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$work/plan-mpi.json" && pass || fail "mpirun plan --json is not one JSON object"
# --svg: bytes (tensor sizes from --tensors or the checkpoint's manifest), node
# boundaries, the busiest sender, one small matrix per layer; well-formed XML.
tensors="w13:bf16:64x32,w2:bf16:32x32"  # 6144 bytes per expert
expect_exit 0 "$work/svg.log" -- "$tool" plan --old "$demo/old.json" --new "$demo/new.json" \
  --tensors "$tensors" --ranks-per-node 2 --svg "$work/t.svg" --json "$work/t.json"
/usr/bin/python3 - "$work/t.svg" "$work/t.json" <<'PY' && pass || fail "plan --svg content"
import json, sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
texts = ["".join(t.itertext()) for t in root.iter(ns + "text")]
plan = json.load(open(sys.argv[2]))["plan"]
assert plan["bytes_per_expert"] == 6144 and plan["totals"]["bytes_moved"] == 23 * 6144, plan
for label in ("sender (EP rank)", "receiver (EP rank)", "node 0", "node 1"):
    assert label in texts, (label, texts)
for layer in range(4):
    assert f"layer {layer}" in texts, texts
# The busiest sender is the rank sending the most bytes over all layers.
sent = [sum(row) * 6144 for row in plan["traffic"]]
busiest = max(range(len(sent)), key=lambda r: (sent[r], -r))
assert any(t.startswith(f"busiest sender: rank {busiest}, ") for t in texts), texts
# One tooltip per non-empty cell of the summed matrix, in bytes.
tips = [t.text for t in root.iter(ns + "title") if t.text.startswith("rank ") and "->" in t.text]
cells = [(s, d) for s, row in enumerate(plan["traffic"]) for d, v in enumerate(row) if v]
assert len(tips) == len(cells), (len(tips), len(cells))
PY
"$tool" generate --placement "$demo/old.json" --tensors "$tensors" --output "$work/ck" >/dev/null
expect_exit 0 "$work/svg2.log" -- "$tool" plan --old "$demo/old.json" --new "$demo/new.json" \
  --input "$work/ck" --svg "$work/t2.svg"
# Without a node layout (a plain process): no node boundaries, and it says so.
expect_in "$work/t2.svg" "nodes unknown"
grep -q ">node 0<" "$work/t2.svg" && fail "node labels without a node layout" || pass
expect_in "$work/t2.svg" "6.00 KiB per expert (w13, w2)"
# --svg needs the tensor sizes.
expect_exit 64 "$work/svg3.log" -- "$tool" plan --old "$demo/old.json" --new "$demo/new.json" --svg "$work/t3.svg"
expect_in "$work/svg3.log" "--tensors"
# Incompatible placements: exit 2, the problem named.
python3 "$here/placements.py" vector invalid "$work"
expect_exit 2 "$work/bad.log" -- "$tool" plan --old "$work/old.json" --new "$work/new.json"
expect_in "$work/bad.log" "logical expert 4"
finish
