#!/usr/bin/env bash
# `balance`: the output equals an independent Python + numpy implementation of DeepSeek's
# EPLB on many loads; every load form; the traffic-aware mode against `plan`; errors and
# their exit codes; one output file under mpirun.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
py=/usr/bin/python3
"$py" "$here/eplb_reference.py" "$tool" "$work" >"$work/ref.log" 2>&1 && pass \
  || { fail "balance differs from the Python implementation"; cat "$work/ref.log" >&2; }

readme='[[90,132,40,61,104,165,39,4,73,56,183,86],[20,107,104,64,19,197,187,157,172,86,16,27]]'
echo "$readme" >"$work/load.json"
opts=(--num-replicas 16 --num-groups 4 --num-nodes 2 --ep-size 8)
expect_exit 0 "$work/readme.log" -- "$tool" balance --load "$work/load.json" "${opts[@]}" --output "$work/ref.json"
expect_in "$work/readme.log" "reference (DeepSeek EPLB)"
"$py" - "$work/ref.json" <<'PY' && pass || fail "README example output"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["format"] == "eplb-placement" and p["ep_size"] == 8 and p["num_slots_per_rank"] == 2
assert p["physical_to_logical_map"] == [[5,6,5,7,8,4,3,4,10,9,10,2,0,1,11,1],
                                        [7,10,6,8,6,11,8,9,2,4,5,1,5,0,3,1]], p
PY
ls -a "$work" | grep -q '\.tmp\.' && fail "temporary file left next to the output" || pass

# Per-slot loads folded through --old give the same loads as the logical form: each slot of
# ref.json carries its expert's load / replica count, as vLLM would have measured it.
"$py" - "$work/ref.json" "$work/load.json" "$work/phys.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["physical_to_logical_map"]; w = json.load(open(sys.argv[2]))
out = []
for layer, loads in zip(p, w):
    row = [0.0] * len(layer); seen = {}
    for s, e in enumerate(layer):
        n = layer.count(e); first = seen.setdefault(e, s)
        row[s] = loads[e] - (n - 1) * (loads[e] // n) if s == first else loads[e] // n
    out.append(row)
json.dump(out, open(sys.argv[3], "w"))
PY
expect_exit 0 "$work/phys.log" -- "$tool" balance --load "$work/phys.json" --old "$work/ref.json" "${opts[@]}" --output "$work/from-phys.json"
expect_in "$work/phys.log" "per physical slot, folded through the old placement"
# Loads equal to those ref.json was made for: nothing to move.
grep -qE '^ours \(traffic-aware\) +0\.8164 +0 \(0\.0% of slots\)' "$work/phys.log" && pass || fail "unchanged loads moved experts"
cmp -s "$work/from-phys.json" "$work/ref.json" && pass || fail "unchanged loads changed the placement"

# Traffic-aware at DeepSeek-V3 scale: loads drift +-10% from those OLD was made for.
"$py" - "$work" <<'PY'
import json, sys, numpy as np
rng = np.random.default_rng(7)
base = np.round(1000 * rng.lognormal(0, 1, (8, 256)))
json.dump(base.astype(int).tolist(), open(sys.argv[1] + "/base.json", "w"))
json.dump(np.round(base * rng.uniform(0.9, 1.1, base.shape)).astype(int).tolist(),
          open(sys.argv[1] + "/drift.json", "w"))
PY
v3=(--num-replicas 288 --num-groups 8 --num-nodes 4 --ep-size 32)
expect_exit 0 "$work/old.log" -- "$tool" balance --load "$work/base.json" "${v3[@]}" --output "$work/old.json"
expect_exit 0 "$work/drift.log" -- "$tool" balance --load "$work/drift.json" "${v3[@]}" --old "$work/old.json" --output "$work/new.json"
expect_in "$work/drift.log" "layers less balanced than the reference: 0"
ours=$(sed -n 's/^ours (traffic-aware) *[0-9.]* *\([0-9]*\) (.*/\1/p' "$work/drift.log")
ref=$(sed -n 's/^reference (DeepSeek EPLB) *[0-9.]* *\([0-9]*\) (.*/\1/p' "$work/drift.log")
[[ -n $ours && -n $ref && $((ours * 10)) -le $ref ]] && pass || fail "ours moved $ours, reference $ref (want <= a tenth)"
expect_exit 0 "$work/plan.log" -- "$tool" plan --old "$work/old.json" --new "$work/new.json"
expect_in "$work/plan.log" "experts moved: $ours (minimum the placements require: $ours)"
# Properties of ours, checked here independently of the C++ code.
"$py" - "$work/old.json" "$work/new.json" "$work/drift.json" <<'PY' && pass || fail "traffic-aware properties"
import json, sys
old = json.load(open(sys.argv[1])); new = json.load(open(sys.argv[2])); w = json.load(open(sys.argv[3]))
per, groups, nodes, gpus = new["num_slots_per_rank"], 8, 4, 32
for l, (a, b) in enumerate(zip(old["physical_to_logical_map"], new["physical_to_logical_map"])):
    assert sorted(set(b)) == list(range(256)), f"layer {l}: an expert lost its last replica"
    for g in range(gpus):
        ra, rb = a[g * per:(g + 1) * per], b[g * per:(g + 1) * per]
        for e in set(ra) & set(rb):   # stays on the GPU: keeps its old row(s)
            oa = {r for r, x in enumerate(ra) if x == e}; ob = {r for r, x in enumerate(rb) if x == e}
            assert oa <= ob or ob <= oa, f"layer {l} GPU {g} expert {e}: rows {oa} -> {ob}"
    for grp in range(groups):  # a group on one node stays on one node
        nodes_b = {s // (per * gpus // nodes) for s, e in enumerate(b) if e // 32 == grp}
        assert len(nodes_b) == 1, f"layer {l}: group {grp} spread over nodes {nodes_b}"
PY

# One writer under mpirun, same bytes.
expect_exit 0 "$work/mpi.log" -- mpi 2 "$tool" balance --load "$work/drift.json" "${v3[@]}" --old "$work/old.json" --output "$work/new-mpi.json"
cmp -s "$work/new.json" "$work/new-mpi.json" && pass || fail "mpirun output differs"
[[ $(grep -c "ours (traffic-aware)" "$work/mpi.log") -eq 1 ]] && pass || fail "report printed more than once"

# SGLang's dump with steps; the all-zero layer gives a valid placement.
echo '{"rank": 0, "logical_count": [[[1,2,3,4],[0,0,0,0]],[[1,0,3,0],[0,0,0,0]]], "average_utilization_rate_over_window": null}' >"$work/sglang.json"
# A row with no load may be a dense layer: refused until the model's layers say which it is.
expect_exit 2 "$work/sglang0.log" -- "$tool" balance --load "$work/sglang.json" --num-replicas 6 --ep-size 2 --output "$work/s.json"
expect_in "$work/sglang0.log" "'$work/sglang.json' at /logical_count: row 1 has no load at all: SGLang's recorder writes a row per hidden layer, 0 for dense layers, so which rows are MoE layers cannot be told; give the model's layers with --model-layers (e.g. 3-60), --hf DIR or --checkpoint DIR"
[[ ! -e "$work/s.json" ]] && pass || fail "balance wrote a placement from ambiguous rows"
expect_exit 0 "$work/sglang.log" -- "$tool" balance --load "$work/sglang.json" --num-replicas 6 --ep-size 2 --model-layers 0-1 --output "$work/s.json"
expect_in "$work/sglang.log" "SGLang logical_count, per logical expert, summed over 2 steps"

# Errors: bad input exits 2 with the JSON location, bad options 64 with the valid range.
echo '[[1,-2,3,4],[1,2,"x",4],[1,2]]' >"$work/bad.json"
expect_exit 2 "$work/bad.log" -- "$tool" balance --load "$work/bad.json" --num-replicas 4 --ep-size 2 --output "$work/o.json"
expect_in "$work/bad.log" "at /0/1: load -2 is negative"
expect_in "$work/bad.log" "at /1/2: expected a number, got string \"x\""
expect_in "$work/bad.log" "at /2: expected 4 loads (as in the first layer), got 2"
[[ ! -e $work/o.json ]] && pass || fail "output written despite bad loads"
echo '{"logical_counts": [[1,2]]}' >"$work/keys.json"
expect_exit 2 "$work/keys.log" -- "$tool" balance --load "$work/keys.json" --num-replicas 2 --ep-size 2 --output "$work/o.json"
expect_in "$work/keys.log" "no \"logical_count\" among the keys (\"logical_counts\")"
echo '[[1e39, 1]]' >"$work/big.json"
expect_exit 2 "$work/big.log" -- "$tool" balance --load "$work/big.json" --num-replicas 2 --ep-size 2 --output "$work/o.json"
expect_in "$work/big.log" "is too large"
expect_exit 64 "$work/opt1.log" -- "$tool" balance --load "$work/load.json" --num-replicas 12 --num-groups 4 --num-nodes 2 --ep-size 8 --output "$work/o.json"
expect_in "$work/opt1.log" "--num-replicas 12 must be a multiple of --ep-size 8"
expect_exit 64 "$work/opt2.log" -- "$tool" balance --load "$work/load.json" --num-replicas 16 --num-groups 8 --num-nodes 2 --ep-size 8 --output "$work/o.json"
expect_in "$work/opt2.log" "--num-groups 8 must divide the 12 logical experts"
expect_exit 64 "$work/opt3.log" -- "$tool" balance --load "$work/load.json" --num-replicas 8 --ep-size 8 --output "$work/o.json"
expect_in "$work/opt3.log" "must be at least the 12 logical experts"
expect_exit 64 "$work/opt4.log" -- "$tool" balance --load "$work/load.json" --num-replicas 0 --ep-size 8 --output "$work/o.json"
# Ambiguous: 4 loads per layer, OLD has 4 slots and 4 experts in another order.
echo '[[3,2,1,0]]' >"$work/perm.json"; echo '[[1,2,3,4]]' >"$work/l4.json"
expect_exit 64 "$work/amb.log" -- "$tool" balance --load "$work/l4.json" --old "$work/perm.json" --num-replicas 4 --ep-size 2 --output "$work/o.json"
expect_in "$work/amb.log" "--load-form logical or --load-form physical"
expect_exit 0 "$work/amb2.log" -- "$tool" balance --load "$work/l4.json" --old "$work/perm.json" --load-form physical --num-replicas 4 --ep-size 2 --output "$work/o.json"
# OLD that does not fit: different shape, or an expert without a replica.
expect_exit 2 "$work/shape.log" -- "$tool" balance --load "$work/load.json" --old "$work/ref.json" --num-replicas 24 --num-groups 4 --num-nodes 2 --ep-size 8 --output "$work/o.json"
expect_in "$work/shape.log" "traffic-aware balancing keeps both"
finish
